package store

import (
	"strings"
	"sync"
)

// engine is the database engine behind a Store. All SQL of the package is
// written once, in SQLite's spelling; on PostgreSQL each query text is
// translated once (pgSQL) where the engines differ only in spelling.
// Queries whose meaning differs are written so that both engines read
// them alike (no GLOB, no bare integers as booleans, no max() over
// comparisons), and the few pieces that exist on one engine only live in
// files named for it: sqlite pieces in store.go, wtx.go, lock.go,
// bulkread.go and writeback*.go, PostgreSQL ones in postgres*.go.
type engine uint8

const (
	engSQLite engine = iota
	engPostgres
)

func (e engine) String() string {
	if e == engPostgres {
		return "postgresql"
	}
	return "sqlite"
}

// pgCache holds the translation of every query text seen.
var pgCache sync.Map // string -> string

// pgSQL translates a query (or a script of statements) from the package's
// SQLite spelling to PostgreSQL's:
//   - parameters ?, ?NNN become $N;
//   - mailtls_rev( becomes reverse(, instr( strpos(;
//   - INDEXED BY name is dropped (PostgreSQL picks indexes itself);
//   - x IS 0, x IS NOT 1 (SQLite's null-safe comparison) become
//     IS [NOT] DISTINCT FROM;
//   - INSERT OR IGNORE INTO ... becomes INSERT INTO ... ON CONFLICT DO NOTHING;
//   - min(a, b), max(a, b) (SQLite's scalar forms) become LEAST, GREATEST;
//   - sum(x) is cast to BIGINT (PostgreSQL sums integers as NUMERIC);
//   - json_extract(col, '$[N]') becomes (col::json->>N), json_each(x)
//     json_array_elements_text(CAST(x AS json)), whose column is also value;
//   - a subquery in FROM without an alias gets one (required before 16);
//   - in CREATE and ALTER statements, INTEGER PRIMARY KEY becomes an
//     identity column, INTEGER BIGINT, BLOB BYTEA, TEXT TEXT COLLATE "C"
//     (SQLite compares text bytewise; the rollups' reversed-domain ranges
//     rely on it), and WITHOUT ROWID is dropped.
//
// String literals, quoted identifiers, comments and dollar-quoted bodies
// are copied unchanged.
func pgSQL(q string) string {
	if v, ok := pgCache.Load(q); ok {
		return v.(string)
	}
	tr := &translator{toks: tokenize(q)}
	out := tr.run()
	pgCache.Store(q, out)
	return out
}

type tokKind uint8

const (
	tkOther tokKind = iota
	tkSpace
	tkWord   // identifier or keyword
	tkNumber // integer literal
	tkString // '...', "...", $$...$$, or a comment: copied verbatim
	tkParam  // ? or ?NNN
	tkOpen
	tkClose
	tkComma
	tkSemi
)

type token struct {
	kind tokKind
	text string
}

func tokenize(q string) []token {
	var toks []token
	for i := 0; i < len(q); {
		c := q[i]
		j := i + 1
		k := tkOther
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			for j < len(q) && (q[j] == ' ' || q[j] == '\t' || q[j] == '\n' || q[j] == '\r') {
				j++
			}
			k = tkSpace
		case c == '\'' || c == '"':
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c { // doubled quote
						j += 2
						continue
					}
					j++
					break
				}
				j++
			}
			k = tkString
		case c == '-' && j < len(q) && q[j] == '-':
			for j < len(q) && q[j] != '\n' {
				j++
			}
			k = tkString
		case c == '$' && j < len(q) && q[j] == '$':
			end := strings.Index(q[j+1:], "$$")
			if end < 0 {
				j = len(q)
			} else {
				j = j + 1 + end + 2
			}
			k = tkString
		case c == '?':
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			k = tkParam
		case isWordStart(c):
			for j < len(q) && (isWordStart(q[j]) || q[j] >= '0' && q[j] <= '9') {
				j++
			}
			k = tkWord
		case c >= '0' && c <= '9':
			for j < len(q) && (q[j] >= '0' && q[j] <= '9') {
				j++
			}
			k = tkNumber
		case c == '(':
			k = tkOpen
		case c == ')':
			k = tkClose
		case c == ',':
			k = tkComma
		case c == ';':
			k = tkSemi
		}
		toks = append(toks, token{k, q[i:j]})
		i = j
	}
	return toks
}

func isWordStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

type translator struct {
	toks   []token
	maxArg int  // highest parameter number so far (SQLite numbers ? after it)
	ddl    bool // the current statement is CREATE or ALTER
	ignore bool // the current statement was INSERT OR IGNORE
	alias  int
	b      strings.Builder
}

func (t *translator) run() string {
	t.startStatement(0)
	t.emit(0, len(t.toks), true)
	t.endStatement()
	return t.b.String()
}

// startStatement looks at the first word of the statement at i.
func (t *translator) startStatement(i int) {
	t.ddl, t.ignore = false, false
	if j := t.next(i); j < len(t.toks) && t.toks[j].kind == tkWord {
		switch strings.ToUpper(t.toks[j].text) {
		case "CREATE", "ALTER":
			t.ddl = true
		}
	}
}

func (t *translator) endStatement() {
	if t.ignore {
		t.b.WriteString(" ON CONFLICT DO NOTHING")
		t.ignore = false
	}
}

// next returns the index of the first token at or after i that is not
// space or a comment.
func (t *translator) next(i int) int {
	for i < len(t.toks) && (t.toks[i].kind == tkSpace || t.toks[i].kind == tkString && strings.HasPrefix(t.toks[i].text, "--")) {
		i++
	}
	return i
}

func (t *translator) word(i int, w string) bool {
	return i < len(t.toks) && t.toks[i].kind == tkWord && strings.EqualFold(t.toks[i].text, w)
}

// closing returns the index of the parenthesis closing the one at open,
// or len(toks).
func (t *translator) closing(open int) int {
	depth := 0
	for i := open; i < len(t.toks); i++ {
		switch t.toks[i].kind {
		case tkOpen:
			depth++
		case tkClose:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return len(t.toks)
}

// topCommas returns the indexes of the commas directly inside (lo, hi).
func (t *translator) topCommas(lo, hi int) []int {
	var out []int
	depth := 0
	for i := lo + 1; i < hi; i++ {
		switch t.toks[i].kind {
		case tkOpen:
			depth++
		case tkClose:
			depth--
		case tkComma:
			if depth == 0 {
				out = append(out, i)
			}
		}
	}
	return out
}

// aliasNeeded reports whether the token at i ends a FROM item that has no
// alias.
func (t *translator) aliasNeeded(i int) bool {
	if i >= len(t.toks) {
		return true
	}
	switch t.toks[i].kind {
	case tkClose, tkComma, tkSemi:
		return true
	case tkWord:
		switch strings.ToUpper(t.toks[i].text) {
		case "WHERE", "GROUP", "ORDER", "LIMIT", "UNION", "HAVING", "JOIN", "LEFT", "INNER", "CROSS", "ON", "EXCEPT", "INTERSECT", "WINDOW":
			return true
		}
	}
	return false
}

// emit writes the translation of toks[lo:hi].
func (t *translator) emit(lo, hi int, top bool) {
	prevWord := "" // the last word before i, upper case
	for i := lo; i < hi; i++ {
		tk := t.toks[i]
		switch tk.kind {
		case tkSemi:
			if top {
				t.endStatement()
				t.b.WriteString(tk.text)
				t.startStatement(i + 1)
				prevWord = ""
				continue
			}
		case tkParam:
			n := 0
			if len(tk.text) > 1 {
				for _, c := range tk.text[1:] {
					n = n*10 + int(c-'0')
				}
			} else {
				n = t.maxArg + 1
			}
			t.maxArg = max(t.maxArg, n)
			t.b.WriteString("$")
			t.b.WriteString(itoa(n))
			continue
		case tkOpen:
			end := t.closing(i)
			t.b.WriteString("(")
			t.emit(i+1, min(end, hi), false)
			if end < hi {
				t.b.WriteString(")")
			}
			if (prevWord == "FROM" || prevWord == "JOIN") && t.aliasNeeded(t.next(end+1)) {
				t.alias++
				t.b.WriteString(" AS _q" + itoa(t.alias))
			}
			i = end
			prevWord = ""
			continue
		case tkWord:
			if j, ok := t.word1(i, hi); ok {
				i = j
				prevWord = ""
				continue
			}
			prevWord = strings.ToUpper(tk.text)
			t.b.WriteString(tk.text)
			continue
		}
		if tk.kind != tkSpace && !(tk.kind == tkString && strings.HasPrefix(tk.text, "--")) {
			prevWord = ""
		}
		t.b.WriteString(tk.text)
	}
}

// word1 translates the word at i when a rule applies, returning the index
// of the last token it consumed.
func (t *translator) word1(i, hi int) (int, bool) {
	w := strings.ToUpper(t.toks[i].text)
	call := func() (open, end int, ok bool) {
		open = t.next(i + 1)
		if open < hi && t.toks[open].kind == tkOpen {
			end = t.closing(open)
			if end < hi {
				return open, end, true
			}
		}
		return 0, 0, false
	}
	switch w {
	case "MAILTLS_REV", "INSTR":
		if _, _, ok := call(); ok {
			if w == "INSTR" {
				t.b.WriteString("strpos")
			} else {
				t.b.WriteString("reverse")
			}
			return i, true
		}
	case "INDEXED":
		if j := t.next(i + 1); t.word(j, "BY") {
			if k := t.next(j + 1); k < hi && t.toks[k].kind == tkWord {
				return k, true
			}
		}
	case "IS":
		j := t.next(i + 1)
		not := t.word(j, "NOT")
		if not {
			j = t.next(j + 1)
		}
		if j < hi && (t.toks[j].kind == tkNumber || t.toks[j].kind == tkParam) {
			if not {
				t.b.WriteString("IS DISTINCT FROM ")
			} else {
				t.b.WriteString("IS NOT DISTINCT FROM ")
			}
			return j - 1, true
		}
	case "INSERT":
		j := t.next(i + 1)
		if t.word(j, "OR") {
			if k := t.next(j + 1); t.word(k, "IGNORE") {
				t.b.WriteString("INSERT")
				t.ignore = true
				return k, true
			}
		}
	case "MIN", "MAX":
		if open, end, ok := call(); ok && len(t.topCommas(open, end)) > 0 {
			if w == "MIN" {
				t.b.WriteString("LEAST(")
			} else {
				t.b.WriteString("GREATEST(")
			}
			t.emit(open+1, end, false)
			t.b.WriteString(")")
			return end, true
		}
	case "SUM":
		if open, end, ok := call(); ok {
			t.b.WriteString("CAST(sum(")
			t.emit(open+1, end, false)
			t.b.WriteString(") AS BIGINT)")
			return end, true
		}
	case "JSON_EXTRACT":
		if open, end, ok := call(); ok {
			if cs := t.topCommas(open, end); len(cs) == 1 {
				p := t.next(cs[0] + 1)
				path := t.toks[p].text
				if t.toks[p].kind == tkString && strings.HasPrefix(path, "'$[") && strings.HasSuffix(path, "]'") && t.next(p+1) == end {
					t.b.WriteString("(CAST(")
					t.emit(open+1, cs[0], false)
					t.b.WriteString(" AS json)->>" + path[3:len(path)-2] + ")")
					return end, true
				}
			}
		}
	case "JSON_EACH":
		if open, end, ok := call(); ok {
			t.b.WriteString("json_array_elements_text(CAST(")
			t.emit(open+1, end, false)
			t.b.WriteString(" AS json))")
			return end, true
		}
	}
	if t.ddl {
		switch w {
		case "INTEGER":
			if j := t.next(i + 1); t.word(j, "PRIMARY") {
				t.b.WriteString("BIGINT GENERATED BY DEFAULT AS IDENTITY")
			} else {
				t.b.WriteString("BIGINT")
			}
			return i, true
		case "BLOB":
			t.b.WriteString("BYTEA")
			return i, true
		case "TEXT":
			t.b.WriteString(`TEXT COLLATE "C"`)
			return i, true
		case "WITHOUT":
			if j := t.next(i + 1); t.word(j, "ROWID") {
				return j, true
			}
		}
	}
	return 0, false
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
