/*
 * moderation: the seed's content-moderation rules (scripts/rules/content_moderation.rhai) as a
 * WASM guest, for the seed table's "rule evaluation" row (benches/seed_table.rs).
 *
 * A hand port of the three rules, tried in priority order, first match wins:
 *   spam_filter       (critical)  the text contains "BUY NOW" or "CLICK HERE" (case-sensitive,
 *                                 like Rhai's `contains`)  -> {"rule":"spam_filter","decision":"block","reason":"spam"}
 *   profanity_filter  (high)      a whole word of the text, ignoring case, is on the default
 *                                 list of bilayer's ProfanityFilter -> {"rule":"profanity_filter","decision":"flag","reason":"profanity"}
 *   allow_default     (low)       always                   -> {"rule":"allow_default","decision":"allow"}
 *
 * Words are maximal runs of ASCII letters and digits and of non-ASCII bytes. The host's filter
 * splits on anything that is not Unicode alphanumeric; the two agree on ASCII text (the bench's
 * input) and differ only where non-ASCII punctuation separates words ("damn\u2014it").
 *
 * Input: the message as a JSON string ("\"...\""). Output: the decision as a JSON object.
 * Errors: "invalid input: expected a JSON string".
 *
 * Built by benches/seed_table.rs with the flags of plugins/wasm-plugins/c/build.sh, with
 * -I plugins/wasm-plugins/c for bilayer_guest.h.
 */
#include "bilayer_guest.h"

static const char metadata[] =
    "{\"id\":\"moderation\",\"name\":\"Content moderation rules\",\"version\":\"1.0.0\","
    "\"description\":\"The seed's spam, profanity and default rules\",\"capabilities\":[]}";

EXPORT("bilayer_metadata") uint64_t bilayer_metadata(void) {
    return region(metadata, sizeof metadata - 1);
}

/* bilayer's ProfanityFilter default list (plugins/src/rhai_runtime/profanity.rs). */
static const char *const profanity[] = {
    "asshole", "bastard", "bitch", "bullshit", "crap", "damn",
    "dick", "fuck", "fucking", "motherfucker", "shit",
};

static int contains(const uint8_t *s, uint32_t n, const char *needle) {
    uint32_t m = cstr_len(needle);
    if (m > n) return 0;
    for (uint32_t i = 0; i + m <= n; i++)
        if (s[i] == (uint8_t)needle[0] && bytes_equal(s + i, (const uint8_t *)needle, m)) return 1;
    return 0;
}

static inline int is_word_byte(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static inline uint8_t lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c; }

static int is_profane(const uint8_t *word, uint32_t n) {
    for (uint32_t w = 0; w < sizeof profanity / sizeof profanity[0]; w++) {
        const char *candidate = profanity[w];
        if (cstr_len(candidate) != n) continue;
        uint32_t i = 0;
        while (i < n && lower(word[i]) == (uint8_t)candidate[i]) i++;
        if (i == n) return 1;
    }
    return 0;
}

static int has_profanity(const uint8_t *s, uint32_t n) {
    uint32_t i = 0;
    while (i < n) {
        while (i < n && !is_word_byte(s[i])) i++;
        uint32_t start = i;
        while (i < n && is_word_byte(s[i])) i++;
        if (i > start && is_profane(s + start, i - start)) return 1;
    }
    return 0;
}

#define STATIC_RESULT(text) region(text, sizeof text - 1)

EXPORT("execute") uint64_t execute(const uint8_t *input, uint32_t len) {
    json_t parse;
    json_init(&parse, input, len);
    if (!json_validate(&parse)) return static_error("invalid input: expected a JSON string");
    const uint8_t *root = json_skip_ws_at(input, input + len);
    if (*root != '"') return static_error("invalid input: expected a JSON string");
    buf_t text = {0};
    json_decode_string(root, &text);
    if (text.oom) return static_error("out of memory");

    static const char spam[] = "{\"rule\":\"spam_filter\",\"decision\":\"block\",\"reason\":\"spam\"}";
    static const char flag[] =
        "{\"rule\":\"profanity_filter\",\"decision\":\"flag\",\"reason\":\"profanity\"}";
    static const char allow[] = "{\"rule\":\"allow_default\",\"decision\":\"allow\"}";
    if (contains(text.data, text.len, "BUY NOW") || contains(text.data, text.len, "CLICK HERE"))
        return STATIC_RESULT(spam);
    if (has_profanity(text.data, text.len)) return STATIC_RESULT(flag);
    return STATIC_RESULT(allow);
}
