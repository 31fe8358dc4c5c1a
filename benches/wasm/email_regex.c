/*
 * email_regex: the seed table's "regex match" as a WASM guest (benches/seed_table.rs).
 *
 * There is no regex engine in this freestanding guest: this is a hand-written matcher for the
 * one pattern of benches/data/regex_pattern.txt,
 *
 *     [A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}
 *
 * with `is_match` semantics (does the pattern match anywhere in the text), exactly: for some
 * '@' with a local-part character right before it, the run of domain characters after it holds
 * a '.' that is not its first character and is followed by two ASCII letters. Every class is
 * ASCII, so non-ASCII bytes simply never match, as in Rust's regex and Python's re. It is what
 * a guest author would write for a fixed pattern; a general engine (the Rust regex crate built
 * for wasm32) would be slower per byte than this specialised loop, so read the WASM figure as
 * a lower bound for "a regex in WASM".
 *
 * Input: the text as a JSON string ("\"...\""). Output: `true` or `false` (JSON).
 * Errors: "invalid input: expected a JSON string".
 *
 * Built by benches/seed_table.rs with the flags of plugins/wasm-plugins/c/build.sh, with
 * -I plugins/wasm-plugins/c for bilayer_guest.h.
 */
#include "bilayer_guest.h"

static const char metadata[] =
    "{\"id\":\"email_regex\",\"name\":\"Email pattern matcher\",\"version\":\"1.0.0\","
    "\"description\":\"Whether a text contains an email address (a fixed pattern)\","
    "\"capabilities\":[]}";

EXPORT("bilayer_metadata") uint64_t bilayer_metadata(void) {
    return region(metadata, sizeof metadata - 1);
}

static inline int is_alpha(uint8_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static inline int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* [A-Za-z0-9._%+-] */
static inline int is_local(uint8_t c) {
    return is_alpha(c) || is_digit(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

/* [A-Za-z0-9.-] */
static inline int is_domain(uint8_t c) { return is_alpha(c) || is_digit(c) || c == '.' || c == '-'; }

static int has_email(const uint8_t *s, uint32_t n) {
    for (uint32_t at = 1; at < n; at++) {
        if (s[at] != '@' || !is_local(s[at - 1])) continue;
        for (uint32_t k = at + 1; k < n && is_domain(s[k]); k++) {
            if (s[k] == '.' && k > at + 1 && k + 2 < n && is_alpha(s[k + 1]) && is_alpha(s[k + 2]))
                return 1;
        }
    }
    return 0;
}

EXPORT("execute") uint64_t execute(const uint8_t *input, uint32_t len) {
    json_t parse;
    json_init(&parse, input, len);
    if (!json_validate(&parse)) return static_error("invalid input: expected a JSON string");
    const uint8_t *root = json_skip_ws_at(input, input + len);
    if (*root != '"') return static_error("invalid input: expected a JSON string");
    buf_t text = {0};
    json_decode_string(root, &text);
    if (text.oom) return static_error("out of memory");
    static const char yes[] = "true", no[] = "false";
    return has_email(text.data, text.len) ? region(yes, 4) : region(no, 5);
}
