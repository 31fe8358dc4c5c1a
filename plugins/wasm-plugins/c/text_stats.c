/*
 * text_stats: counts the bytes, characters, words, lines and sentences of a text.
 *
 * Input: the text is
 *   - the string member "text" when the input is a JSON object that has one ({"text": "..."});
 *   - the decoded string when the input is a JSON string ("\"...\"");
 *   - otherwise the input bytes themselves, which must be valid UTF-8 (else the error
 *     "text is not valid UTF-8").
 *
 * Output: {"bytes":B,"chars":C,"words":W,"lines":L,"sentences":S} where
 *   bytes      the length of the text in UTF-8 bytes;
 *   chars      the number of Unicode code points (scalar values);
 *   words      the number of maximal runs of characters that are not white space, where white
 *              space is the Unicode White_Space property: U+0009..U+000D, U+0020, U+0085,
 *              U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000
 *              (Rust's char::is_whitespace, so words == str::split_whitespace().count());
 *   lines      0 for the empty text; otherwise the number of '\n' plus one if the text does not
 *              end with '\n' (a final line without a newline counts, "\r\n" is one line end,
 *              a lone '\r' is not a line end; Rust's str::lines().count());
 *   sentences  the number of sentence ends plus one if content follows the last one. A sentence
 *              end is a maximal run of '.', '!' and '?' that is followed by white space or the
 *              end of the text and is preceded, since the previous sentence end (or the start),
 *              by at least one content character: one that is neither white space nor one of
 *              '.', '!', '?'. So "Hi. How are you?! Fine" has 3, "e.g. this" has 2 ("e.g" is
 *              content, its final '.' an end), "..." has 0, "Version 1.2 is out" has 1.
 */
#include "bilayer_guest.h"

static const char metadata[] =
    "{\"id\":\"text_stats\",\"name\":\"Text statistics\",\"version\":\"1.0.0\","
    "\"description\":\"Counts the bytes, characters, words, lines and sentences of a text\","
    "\"capabilities\":[]}";

EXPORT("bilayer_metadata") uint64_t bilayer_metadata(void) {
    return region(metadata, sizeof metadata - 1);
}

static int is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static int is_terminator(uint32_t c) { return c == '.' || c == '!' || c == '?'; }

EXPORT("execute") uint64_t execute(const uint8_t *input, uint32_t len) {
    const uint8_t *text = input;
    uint32_t text_len = len;
    buf_t decoded = {0};

    json_t parse;
    json_init(&parse, input, len);
    if (json_validate(&parse)) {
        const uint8_t *end = input + len;
        const uint8_t *root = json_skip_ws_at(input, end);
        const uint8_t *string = 0;
        if (*root == '"') {
            string = root;
        } else if (*root == '{') {
            const uint8_t *key = 0, *value = 0, *found = 0;
            json_iter_t it = json_iter(root, end);
            while (json_next_item(&it, &key, &value)) {
                decoded.len = 0;
                json_decode_string(key, &decoded);
                if (decoded.len == 4 && bytes_equal(decoded.data, (const uint8_t *)"text", 4))
                    found = value;
            }
            if (found && *found == '"') string = found;
        }
        if (string) {
            decoded.len = 0;
            json_decode_string(string, &decoded);
            if (decoded.oom) return static_error("out of memory");
            text = decoded.data;
            text_len = decoded.len;
        }
    }
    if (text == input && !utf8_valid(input, len)) return static_error("text is not valid UTF-8");

    uint64_t chars = 0, words = 0, newlines = 0, sentences = 0;
    int in_word = 0, content = 0, ending = 0;
    const uint8_t *p = text, *end = text + text_len;
    while (p < end) {
        uint32_t c;
        p += utf8_next(p, end, &c); /* valid by now */
        chars++;
        if (c == '\n') newlines++;
        if (is_white_space(c)) {
            in_word = 0;
            if (ending) {
                sentences++;
                content = 0;
            }
            ending = 0;
        } else {
            if (!in_word) words++;
            in_word = 1;
            if (is_terminator(c)) {
                if (content) ending = 1;
            } else {
                content = 1;
                ending = 0;
            }
        }
    }
    if (content) sentences++; /* an end at the end of the text, or a last unfinished sentence */
    uint64_t lines = newlines + (text_len > 0 && text[text_len - 1] != '\n');

    buf_t out = {0};
    buf_str(&out, "{\"bytes\":");
    buf_u64(&out, text_len);
    buf_str(&out, ",\"chars\":");
    buf_u64(&out, chars);
    buf_str(&out, ",\"words\":");
    buf_u64(&out, words);
    buf_str(&out, ",\"lines\":");
    buf_u64(&out, lines);
    buf_str(&out, ",\"sentences\":");
    buf_u64(&out, sentences);
    buf_str(&out, "}");
    return buf_result(&out, 0);
}
