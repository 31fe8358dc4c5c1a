/*
 * bilayer_guest.h: the freestanding helpers the C plugins share (no libc).
 *
 * - the ABI exports `alloc` and `dealloc` (a bump allocator over memory.grow, with
 *   mark/release `dealloc` so a reused instance leaves its heap as it found it);
 * - packed result regions (docs/wasm-abi.md, section 3);
 * - a growable output buffer, decimal and JSON-string writers;
 * - a strict UTF-8 decoder (what Rust's `std::str::from_utf8` accepts);
 * - a validating JSON reader with serde_json's grammar and nesting limit, plus helpers to walk
 *   an already validated value.
 *
 * Build (see build.sh; the test plugins/tests/wasm_c_plugins.rs uses the same flags):
 *   clang --target=wasm32-unknown-unknown -O2 -ffreestanding -nostdlib -mbulk-memory \
 *         -Wall -Wextra -Werror -Wl,--no-entry -o json_extract.wasm json_extract.c
 * -mbulk-memory lowers __builtin_memcpy/memset to the memory.copy/memory.fill instructions, so
 * no memcpy symbol is needed.
 */
#ifndef BILAYER_GUEST_H
#define BILAYER_GUEST_H

#include <stddef.h>
#include <stdint.h>

#define EXPORT(name) __attribute__((export_name(name)))

/* ------------------------------------------------------------------------------------------ */
/* Memory                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Provided by wasm-ld: the first byte after the data segments and the stack. */
extern unsigned char __heap_base;
static uintptr_t heap_top = (uintptr_t)&__heap_base;

/* Makes sure linear memory reaches `end`, growing it; 0 when the host's memory cap says no. */
static inline int heap_reserve_to(uintptr_t end) {
    uintptr_t have = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
    if (end <= have) return 1;
    size_t pages = (size_t)((end - have + 65535u) / 65536u);
    return __builtin_wasm_memory_grow(0, pages) != (size_t)-1;
}

/* ABI: a block of `len` writable bytes, 8-byte aligned, or 0 when out of memory. */
EXPORT("alloc") void *alloc(uint32_t len) {
    uintptr_t ptr = (heap_top + 7u) & ~(uintptr_t)7u;
    if (ptr < heap_top || len > UINTPTR_MAX - ptr) return 0;
    if (!heap_reserve_to(ptr + len)) return 0;
    heap_top = ptr + len;
    return (void *)ptr;
}

/* ABI: mark/release. Freeing a block frees it and everything allocated after it. The host frees
 * a reused instance's output, then its input, so every call leaves the heap as it found it;
 * a fresh instance per call (the default) never calls this. Static data is never freed. */
EXPORT("dealloc") void dealloc(void *ptr, uint32_t len) {
    (void)len;
    uintptr_t p = (uintptr_t)ptr;
    if (p >= (uintptr_t)&__heap_base && p < heap_top) heap_top = p;
}

/* ------------------------------------------------------------------------------------------ */
/* Regions (ptr << 32 | error bit 31 | len)                                                   */
/* ------------------------------------------------------------------------------------------ */

static inline uint64_t region(const void *ptr, uint32_t len) {
    return ((uint64_t)(uintptr_t)ptr << 32) | (len & 0x7FFFFFFFu);
}

static inline uint64_t error_region(const void *ptr, uint32_t len) {
    return region(ptr, len) | 0x80000000u;
}

static inline uint32_t cstr_len(const char *s) {
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}

/* A constant error message (lives in the data segment). */
static inline uint64_t static_error(const char *message) {
    return error_region(message, cstr_len(message));
}

/* ------------------------------------------------------------------------------------------ */
/* Growable buffer                                                                            */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    uint8_t *data;
    uint32_t len, cap;
    int oom; /* set once an allocation failed; every later write is dropped */
} buf_t;

static inline int buf_grow(buf_t *b, uint32_t extra) {
    if (b->oom) return 0;
    if (extra <= b->cap - b->len) return 1;
    if (extra > 0x7FFFFFFFu - b->len) { b->oom = 1; return 0; }
    uint32_t need = b->len + extra;
    uint32_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > 0x3FFFFFFFu ? need : cap * 2;
    uintptr_t base = (uintptr_t)b->data;
    if (b->data && base + b->cap == heap_top && cap <= UINTPTR_MAX - base) {
        /* The newest block on the heap: extend it in place. */
        if (!heap_reserve_to(base + cap)) { b->oom = 1; return 0; }
        heap_top = base + cap;
        b->cap = cap;
        return 1;
    }
    uint8_t *data = alloc(cap);
    if (!data) { b->oom = 1; return 0; }
    if (b->len) __builtin_memcpy(data, b->data, b->len);
    b->data = data;
    b->cap = cap;
    return 1;
}

static inline void buf_put(buf_t *b, const void *bytes, uint32_t n) {
    if (n == 0 || !buf_grow(b, n)) return;
    __builtin_memcpy(b->data + b->len, bytes, n);
    b->len += n;
}

static inline void buf_byte(buf_t *b, uint8_t c) {
    if (!buf_grow(b, 1)) return;
    b->data[b->len++] = c;
}

static inline void buf_str(buf_t *b, const char *s) { buf_put(b, s, cstr_len(s)); }

static inline void buf_u64(buf_t *b, uint64_t v) {
    char digits[20];
    int n = 0;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) buf_byte(b, (uint8_t)digits[--n]);
}

static inline void buf_utf8(buf_t *b, uint32_t cp) {
    if (cp < 0x80) {
        buf_byte(b, (uint8_t)cp);
    } else if (cp < 0x800) {
        buf_byte(b, (uint8_t)(0xC0 | (cp >> 6)));
        buf_byte(b, (uint8_t)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        buf_byte(b, (uint8_t)(0xE0 | (cp >> 12)));
        buf_byte(b, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
        buf_byte(b, (uint8_t)(0x80 | (cp & 0x3F)));
    } else {
        buf_byte(b, (uint8_t)(0xF0 | (cp >> 18)));
        buf_byte(b, (uint8_t)(0x80 | ((cp >> 12) & 0x3F)));
        buf_byte(b, (uint8_t)(0x80 | ((cp >> 6) & 0x3F)));
        buf_byte(b, (uint8_t)(0x80 | (cp & 0x3F)));
    }
}

/* Writes valid UTF-8 `s` as a JSON string the way serde_json does: `"` and `\` escaped, the
 * control characters U+0000..U+001F as \b \t \n \f \r or \u00xx (lowercase hex), everything
 * else (including `/`, U+007F and non-ASCII) as is. */
static inline void buf_json_string(buf_t *b, const uint8_t *s, uint32_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_byte(b, '"');
    for (uint32_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        switch (c) {
        case '"': buf_put(b, "\\\"", 2); break;
        case '\\': buf_put(b, "\\\\", 2); break;
        case '\b': buf_put(b, "\\b", 2); break;
        case '\t': buf_put(b, "\\t", 2); break;
        case '\n': buf_put(b, "\\n", 2); break;
        case '\f': buf_put(b, "\\f", 2); break;
        case '\r': buf_put(b, "\\r", 2); break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                buf_put(b, esc, 6);
            } else {
                buf_byte(b, c);
            }
        }
    }
    buf_byte(b, '"');
}

/* The buffer as the call's result (an error region when is_error). */
static inline uint64_t buf_result(buf_t *b, int is_error) {
    if (b->oom) return static_error("out of memory");
    return is_error ? error_region(b->data, b->len) : region(b->data, b->len);
}

static inline int bytes_equal(const uint8_t *a, const uint8_t *b, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Decodes one code point at p (p < end). Returns its length (1..4) or 0 for an invalid sequence:
 * a stray continuation byte, a truncated sequence, an overlong form, a surrogate (U+D800..DFFF)
 * or a value above U+10FFFF, exactly what std::str::from_utf8 rejects. */
static inline int utf8_next(const uint8_t *p, const uint8_t *end, uint32_t *cp) {
    uint8_t c = p[0];
    if (c < 0x80) { *cp = c; return 1; }
    int n;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (end - p < n) return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

static inline int utf8_valid(const uint8_t *p, uint32_t n) {
    const uint8_t *end = p + n;
    uint32_t cp;
    while (p < end) {
        int k = utf8_next(p, end, &cp);
        if (!k) return 0;
        p += k;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* JSON                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* serde_json's limit: the 128th level of nested arrays/objects is an error. */
#define JSON_MAX_DEPTH 127

typedef struct {
    const uint8_t *start, *p, *end;
    int depth;
    const char *error; /* the first error, constant text */
    uint32_t error_at; /* its byte offset */
} json_t;

static inline void json_init(json_t *j, const uint8_t *p, uint32_t len) {
    j->start = j->p = p;
    j->end = p + len;
    j->depth = 0;
    j->error = 0;
    j->error_at = 0;
}

static inline int json_fail(json_t *j, const char *message) {
    if (!j->error) {
        j->error = message;
        j->error_at = (uint32_t)(j->p - j->start);
    }
    return 0;
}

static inline void json_ws(json_t *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static inline int json_hex4(const uint8_t *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        uint32_t d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = (v << 4) | d;
    }
    *out = v;
    return 1;
}

/* At a `"`: validates the string (escapes, surrogate pairs, UTF-8, no raw control characters). */
static inline int json_skip_string(json_t *j) {
    j->p++;
    for (;;) {
        if (j->p >= j->end) return json_fail(j, "unterminated string");
        uint8_t c = *j->p;
        if (c == '"') { j->p++; return 1; }
        if (c < 0x20) return json_fail(j, "control character in string");
        if (c == '\\') {
            if (j->end - j->p < 2) return json_fail(j, "unterminated string");
            uint8_t e = j->p[1];
            if (e == 'u') {
                uint32_t u, lo;
                if (j->end - j->p < 6 || !json_hex4(j->p + 2, &u))
                    return json_fail(j, "invalid \\u escape");
                if (u >= 0xDC00 && u <= 0xDFFF) return json_fail(j, "lone surrogate in \\u escape");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    const uint8_t *q = j->p + 6;
                    if (j->end - q < 6 || q[0] != '\\' || q[1] != 'u' || !json_hex4(q + 2, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return json_fail(j, "lone surrogate in \\u escape");
                    j->p += 6;
                }
                j->p += 6;
                continue;
            }
            if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
                e == 't') {
                j->p += 2;
                continue;
            }
            return json_fail(j, "invalid escape");
        }
        if (c < 0x80) { j->p++; continue; }
        uint32_t cp;
        int n = utf8_next(j->p, j->end, &cp);
        if (!n) return json_fail(j, "invalid UTF-8 in string");
        j->p += n;
    }
}

static inline int json_is_digit(const json_t *j) {
    return j->p < j->end && *j->p >= '0' && *j->p <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static inline int json_skip_number(json_t *j) {
    if (j->p < j->end && *j->p == '-') j->p++;
    if (!json_is_digit(j)) return json_fail(j, "invalid number");
    if (*j->p == '0') j->p++;
    else while (json_is_digit(j)) j->p++;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!json_is_digit(j)) return json_fail(j, "invalid number");
        while (json_is_digit(j)) j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (!json_is_digit(j)) return json_fail(j, "invalid number");
        while (json_is_digit(j)) j->p++;
    }
    return 1;
}

static inline int json_skip_literal(json_t *j, const char *word) {
    uint32_t n = cstr_len(word);
    if ((uint32_t)(j->end - j->p) < n || !bytes_equal(j->p, (const uint8_t *)word, n))
        return json_fail(j, "expected a value");
    j->p += n;
    return 1;
}

/* Skips (and validates) one value, leading whitespace included. */
static inline int json_skip_value(json_t *j) {
    json_ws(j);
    if (j->p >= j->end) return json_fail(j, "unexpected end of input");
    switch (*j->p) {
    case '{':
    case '[': {
        uint8_t close = *j->p == '{' ? '}' : ']';
        int object = close == '}';
        if (++j->depth > JSON_MAX_DEPTH) return json_fail(j, "nesting too deep");
        j->p++;
        json_ws(j);
        if (j->p < j->end && *j->p == close) { j->p++; j->depth--; return 1; }
        for (;;) {
            if (object) {
                json_ws(j);
                if (j->p >= j->end || *j->p != '"') return json_fail(j, "expected a string key");
                if (!json_skip_string(j)) return 0;
                json_ws(j);
                if (j->p >= j->end || *j->p != ':') return json_fail(j, "expected ':'");
                j->p++;
            }
            if (!json_skip_value(j)) return 0;
            json_ws(j);
            if (j->p < j->end && *j->p == ',') { j->p++; continue; }
            if (j->p < j->end && *j->p == close) { j->p++; j->depth--; return 1; }
            return json_fail(j, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    case '"': return json_skip_string(j);
    case 't': return json_skip_literal(j, "true");
    case 'f': return json_skip_literal(j, "false");
    case 'n': return json_skip_literal(j, "null");
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) return json_skip_number(j);
        return json_fail(j, "expected a value");
    }
}

/* Validates a whole document: one value, then only whitespace. */
static inline int json_validate(json_t *j) {
    if (!json_skip_value(j)) return 0;
    json_ws(j);
    if (j->p != j->end) return json_fail(j, "trailing characters");
    return 1;
}

/* ---- walking a validated value (no error checks needed) ---- */

static inline const uint8_t *json_skip_ws_at(const uint8_t *p, const uint8_t *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* The end of the validated value starting at p (after any whitespace). */
static inline const uint8_t *json_value_end(const uint8_t *p, const uint8_t *end) {
    json_t j;
    json_init(&j, p, (uint32_t)(end - p));
    json_skip_value(&j);
    return j.p;
}

/* Appends the decoded bytes of the validated string at p (a `"`); returns the end of it. */
static inline const uint8_t *json_decode_string(const uint8_t *p, buf_t *out) {
    p++;
    for (;;) {
        uint8_t c = *p;
        if (c == '"') return p + 1;
        if (c != '\\') {
            const uint8_t *run = p;
            while (*p != '"' && *p != '\\') p++;
            buf_put(out, run, (uint32_t)(p - run));
            continue;
        }
        uint8_t e = p[1];
        uint32_t u, lo;
        switch (e) {
        case 'b': buf_byte(out, '\b'); break;
        case 'f': buf_byte(out, '\f'); break;
        case 'n': buf_byte(out, '\n'); break;
        case 'r': buf_byte(out, '\r'); break;
        case 't': buf_byte(out, '\t'); break;
        case 'u':
            json_hex4(p + 2, &u);
            if (u >= 0xD800 && u <= 0xDBFF) {
                json_hex4(p + 8, &lo);
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            buf_utf8(out, u);
            p += 4;
            break;
        default: buf_byte(out, e); /* " \ / */
        }
        p += 2;
    }
}

/* Iterates an object or array: call with *p at `{`/`[`, then json_next_item until it returns 0.
 * For objects *key is set to the key's opening quote; *value to the value (whitespace skipped). */
typedef struct {
    const uint8_t *p, *end;
    int object, first;
} json_iter_t;

static inline json_iter_t json_iter(const uint8_t *p, const uint8_t *end) {
    p = json_skip_ws_at(p, end);
    json_iter_t it = {p + 1, end, *p == '{', 1};
    return it;
}

static inline int json_next_item(json_iter_t *it, const uint8_t **key, const uint8_t **value) {
    const uint8_t *p = json_skip_ws_at(it->p, it->end);
    if (*p == '}' || *p == ']') return 0;
    if (!it->first) p = json_skip_ws_at(p + 1, it->end); /* the ',' */
    it->first = 0;
    if (it->object) {
        *key = p;
        json_t j;
        json_init(&j, p, (uint32_t)(it->end - p));
        json_skip_string(&j);
        p = json_skip_ws_at(j.p, it->end) + 1; /* the ':' */
    }
    p = json_skip_ws_at(p, it->end);
    *value = p;
    it->p = json_value_end(p, it->end);
    return 1;
}

/* Writes the validated value at p compactly: no whitespace, strings re-escaped as serde_json
 * writes them, numbers and literals copied as they are. */
static inline void json_write_compact(const uint8_t *p, const uint8_t *end, buf_t *out, buf_t *scratch) {
    p = json_skip_ws_at(p, end);
    if (*p == '{' || *p == '[') {
        json_iter_t it = json_iter(p, end);
        const uint8_t *key = 0, *value = 0;
        int n = 0;
        buf_byte(out, *p);
        while (json_next_item(&it, &key, &value)) {
            if (n++) buf_byte(out, ',');
            if (it.object) {
                json_write_compact(key, end, out, scratch);
                buf_byte(out, ':');
            }
            json_write_compact(value, end, out, scratch);
        }
        buf_byte(out, it.object ? '}' : ']');
    } else if (*p == '"') {
        scratch->len = 0;
        json_decode_string(p, scratch);
        buf_json_string(out, scratch->data, scratch->len);
    } else {
        const uint8_t *stop = json_value_end(p, end);
        buf_put(out, p, (uint32_t)(stop - p));
    }
}

#endif
