/*
 * json_extract: returns the value at a path inside a JSON document.
 *
 * Input (a JSON object; other members are ignored, a repeated member counts its last time):
 *   {"json": <document>, "path": "a.b.0.c", "default": <value>}
 *
 *   json     required. A JSON value, or a string holding JSON text (which is parsed).
 *   path     optional, the root when absent. Either a string of segments separated by `.`
 *            (the empty string is the root; "a..b" has an empty middle segment), or an array of
 *            segments, each a string or a non-negative integer (for keys containing `.`).
 *   default  optional. Returned instead of the "path not found" error.
 *
 * Each segment steps one level down:
 *   - in an object, into the member with exactly that key (the last one if the key repeats);
 *   - in an array, to the element at that index, written in canonical decimal ("0", "12"; not
 *     "01", "+1", "-1");
 *   - a string, number, boolean or null has nothing below it.
 *
 * Output: the value, compact JSON: no whitespace; strings re-escaped the way serde_json writes
 * them (only `"`, `\` and U+0000..U+001F are escaped; \uXXXX escapes of other characters are
 * decoded to UTF-8); numbers copied exactly as written in the document; object members in
 * document order.
 *
 * Errors (the ABI's error bit):
 *   invalid input: <what> ...          the input or the document is not valid JSON (serde_json's
 *                                      grammar: RFC 8259, nesting below 128 levels), or the
 *                                      members have the wrong types
 *   path not found: no key "k" at segment 2
 *   path not found: no index "7" at segment 1 (array of length 3)
 *   path not found: cannot look up "k" in a string at segment 3
 *
 * Segments in messages are JSON strings; segments are counted from 1.
 *
 * Known difference from serde_json: a number too large for an f64 (1e400) is accepted and copied.
 */
#include "bilayer_guest.h"

static const char metadata[] =
    "{\"id\":\"json_extract\",\"name\":\"JSON field extractor\",\"version\":\"1.0.0\","
    "\"description\":\"Returns the value at a path (a.b.0.c) inside a JSON document\","
    "\"capabilities\":[]}";

EXPORT("bilayer_metadata") uint64_t bilayer_metadata(void) {
    return region(metadata, sizeof metadata - 1);
}

static uint64_t invalid_input(const char *what, const json_t *parse) {
    buf_t out = {0};
    buf_str(&out, "invalid input: ");
    buf_str(&out, what);
    if (parse) {
        buf_str(&out, parse->error);
        buf_str(&out, " at byte ");
        buf_u64(&out, parse->error_at);
    }
    return buf_result(&out, 1);
}

/* A path element of the array form that is an integer: only digits, at most u64::MAX (what
 * serde_json's Number::as_u64 accepts for such text). */
static int is_u64_literal(const uint8_t *p, uint32_t n) {
    static const char max[] = "18446744073709551615";
    if (n == 0 || n > 20) return 0;
    for (uint32_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return 0;
    if (n < 20) return 1;
    for (uint32_t i = 0; i < 20; i++)
        if (p[i] != (uint8_t)max[i]) return p[i] < (uint8_t)max[i];
    return 1;
}

/* A canonical decimal index below `count`. */
static int parse_index(const uint8_t *s, uint32_t n, uint32_t count, uint32_t *index) {
    if (n == 0 || (n > 1 && s[0] == '0')) return 0;
    uint64_t v = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
        if (v >= count) return 0; /* also stops any overflow */
    }
    *index = (uint32_t)v;
    return 1;
}

static const char *type_name(uint8_t c) {
    switch (c) {
    case '"': return "string";
    case 't':
    case 'f': return "boolean";
    case 'n': return "null";
    default: return "number";
    }
}

typedef struct {
    const uint8_t *doc_end;
    const uint8_t *current; /* the value reached so far */
    const uint8_t *default_value, *input_end;
    buf_t *scratch;
    uint32_t segment; /* 1-based */
} walk_t;

/* Steps from w->current into segment `seg`; on failure returns the error region (or, with a
 * default, the default's output) through *result and returns 0. */
static int step(walk_t *w, const uint8_t *seg, uint32_t n, uint64_t *result) {
    const uint8_t *cur = json_skip_ws_at(w->current, w->doc_end);
    w->segment++;
    const uint8_t *key = 0, *value = 0, *found = 0;
    uint32_t count = 0, index = 0;
    if (*cur == '{') {
        json_iter_t it = json_iter(cur, w->doc_end);
        while (json_next_item(&it, &key, &value)) {
            w->scratch->len = 0;
            json_decode_string(key, w->scratch);
            if (w->scratch->len == n && bytes_equal(w->scratch->data, seg, n)) found = value;
        }
    } else if (*cur == '[') {
        json_iter_t it = json_iter(cur, w->doc_end);
        while (json_next_item(&it, &key, &value)) count++;
        if (parse_index(seg, n, count, &index)) {
            it = json_iter(cur, w->doc_end);
            for (uint32_t i = 0; i <= index; i++) json_next_item(&it, &key, &value);
            found = value;
        }
    }
    if (found) {
        w->current = found;
        return 1;
    }
    buf_t out = {0};
    if (w->default_value) {
        json_write_compact(w->default_value, w->input_end, &out, w->scratch);
        *result = buf_result(&out, 0);
        return 0;
    }
    if (*cur == '{') {
        buf_str(&out, "path not found: no key ");
        buf_json_string(&out, seg, n);
        buf_str(&out, " at segment ");
        buf_u64(&out, w->segment);
    } else if (*cur == '[') {
        buf_str(&out, "path not found: no index ");
        buf_json_string(&out, seg, n);
        buf_str(&out, " at segment ");
        buf_u64(&out, w->segment);
        buf_str(&out, " (array of length ");
        buf_u64(&out, count);
        buf_str(&out, ")");
    } else {
        buf_str(&out, "path not found: cannot look up ");
        buf_json_string(&out, seg, n);
        buf_str(&out, " in a ");
        buf_str(&out, type_name(*cur));
        buf_str(&out, " at segment ");
        buf_u64(&out, w->segment);
    }
    *result = buf_result(&out, 1);
    return 0;
}

EXPORT("execute") uint64_t execute(const uint8_t *input, uint32_t len) {
    buf_t scratch = {0};
    json_t parse;
    json_init(&parse, input, len);
    if (!json_validate(&parse)) return invalid_input("", &parse);
    const uint8_t *end = input + len;
    const uint8_t *root = json_skip_ws_at(input, end);
    if (*root != '{')
        return invalid_input("expected a JSON object with members \"json\" and \"path\"", 0);

    const uint8_t *key = 0, *value = 0, *json = 0, *path = 0, *default_value = 0;
    json_iter_t it = json_iter(root, end);
    while (json_next_item(&it, &key, &value)) {
        scratch.len = 0;
        json_decode_string(key, &scratch);
        if (scratch.len == 4 && bytes_equal(scratch.data, (const uint8_t *)"json", 4)) json = value;
        if (scratch.len == 4 && bytes_equal(scratch.data, (const uint8_t *)"path", 4)) path = value;
        if (scratch.len == 7 && bytes_equal(scratch.data, (const uint8_t *)"default", 7))
            default_value = value;
    }
    if (!json) return invalid_input("missing member \"json\"", 0);

    /* The document: the member itself, or the JSON text in it. */
    const uint8_t *doc = json, *doc_end = end;
    buf_t text = {0};
    if (*json == '"') {
        json_decode_string(json, &text);
        if (text.oom) return static_error("out of memory");
        json_t inner;
        json_init(&inner, text.data, text.len);
        if (!json_validate(&inner))
            return invalid_input("member \"json\" holds invalid JSON text: ", &inner);
        doc = text.data;
        doc_end = text.data + text.len;
    }

    /* Check the path's type and elements before walking, so a bad path is always reported. */
    if (path && *path != '"' && *path != '[')
        return invalid_input("\"path\" must be a string or an array", 0);
    if (path && *path == '[') {
        it = json_iter(path, end);
        while (json_next_item(&it, &key, &value)) {
            if (*value == '"') continue;
            const uint8_t *stop = json_value_end(value, end);
            if (!is_u64_literal(value, (uint32_t)(stop - value)))
                return invalid_input("path elements must be strings or non-negative integers", 0);
        }
    }

    walk_t w = {doc_end, doc, default_value, end, &scratch, 0};
    uint64_t result = 0;
    buf_t seg = {0};
    if (path && *path == '"') {
        json_decode_string(path, &seg);
        if (seg.oom) return static_error("out of memory");
        uint32_t from = 0;
        for (uint32_t i = 0; seg.len > 0 && i <= seg.len; i++) {
            if (i < seg.len && seg.data[i] != '.') continue;
            if (!step(&w, seg.data + from, i - from, &result)) return result;
            from = i + 1;
        }
    } else if (path) {
        it = json_iter(path, end);
        while (json_next_item(&it, &key, &value)) {
            seg.len = 0;
            if (*value == '"') json_decode_string(value, &seg);
            else buf_put(&seg, value, (uint32_t)(json_value_end(value, end) - value));
            if (seg.oom) return static_error("out of memory");
            if (!step(&w, seg.data, seg.len, &result)) return result;
        }
    }

    buf_t out = {0};
    json_write_compact(w.current, doc_end, &out, &scratch);
    return buf_result(&out, 0);
}
