/* A JSON syntax check that allocates nothing, to tell text cJSON refuses from cJSON running out of memory: its
 * parser returns NULL for both. */
#include "base/internal.h"

/* cJSON's limits, within which the check stays: it refuses deeper nesting (CJSON_NESTING_LIMIT), and upstream's
 * 1.7.15 reads at most 63 characters of a number (Debian's reads more: being stricter costs nothing). */
#define JSON_MAX_DEPTH 1000
#define JSON_MAX_NUMBER 63

typedef struct json_cursor {
    const unsigned char *s;
    size_t n, i;
} json_cursor;

static int json_at(const json_cursor *c, unsigned char ch) { return c->i < c->n && c->s[c->i] == ch; }

static int json_digit(const json_cursor *c) { return c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9'; }

static void json_space(json_cursor *c)
{
    while (json_at(c, ' ') || json_at(c, '\t') || json_at(c, '\n') || json_at(c, '\r'))
        c->i++;
}

static int json_word(json_cursor *c, const char *word)
{
    for (; *word; word++, c->i++)
        if (!json_at(c, (unsigned char)*word))
            return 0;
    return 1;
}

/* Four hex digits after "\u", into *u. */
static int json_hex4(json_cursor *c, unsigned *u)
{
    *u = 0;
    for (int k = 0; k < 4; k++, c->i++) {
        if (c->i >= c->n)
            return 0;
        const unsigned ch = c->s[c->i];
        const int v = ch >= '0' && ch <= '9' ? (int)(ch - '0')
                      : ch >= 'a' && ch <= 'f' ? (int)(ch - 'a' + 10)
                      : ch >= 'A' && ch <= 'F' ? (int)(ch - 'A' + 10)
                                               : -1;
        if (v < 0)
            return 0;
        *u = *u << 4 | (unsigned)v;
    }
    return 1;
}

/* A string; a UTF-16 surrogate must come as a pair, as cJSON wants. */
static int json_string(json_cursor *c)
{
    if (!json_at(c, '"'))
        return 0;
    for (c->i++; c->i < c->n;) {
        const unsigned ch = c->s[c->i++];
        if (ch == '"')
            return 1;
        if (ch < 0x20)
            return 0;
        if (ch != '\\')
            continue;
        if (c->i >= c->n)
            return 0;
        const unsigned e = c->s[c->i++];
        unsigned u, low;
        if (e == 'u') {
            if (!json_hex4(c, &u) || (u >= 0xDC00 && u <= 0xDFFF))
                return 0;
            if (u >= 0xD800 && u <= 0xDBFF &&
                !(json_word(c, "\\u") && json_hex4(c, &low) && low >= 0xDC00 && low <= 0xDFFF))
                return 0;
        } else if (!(e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't')) {
            return 0;
        }
    }
    return 0;
}

static int json_number(json_cursor *c)
{
    const size_t start = c->i;
    if (json_at(c, '-'))
        c->i++;
    if (json_at(c, '0'))
        c->i++;
    else if (json_digit(c))
        while (json_digit(c))
            c->i++;
    else
        return 0;
    if (json_at(c, '.')) {
        c->i++;
        if (!json_digit(c))
            return 0;
        while (json_digit(c))
            c->i++;
    }
    if (json_at(c, 'e') || json_at(c, 'E')) {
        c->i++;
        if (json_at(c, '+') || json_at(c, '-'))
            c->i++;
        if (!json_digit(c))
            return 0;
        while (json_digit(c))
            c->i++;
    }
    return c->i - start <= JSON_MAX_NUMBER;
}

/* One value, inside `depth` arrays and objects. */
static int json_value(json_cursor *c, int depth)
{
    json_space(c);
    if (c->i >= c->n)
        return 0;
    const unsigned char open = c->s[c->i];
    if (open != '[' && open != '{') {
        if (open == '"')
            return json_string(c);
        if (open == 't')
            return json_word(c, "true");
        if (open == 'f')
            return json_word(c, "false");
        if (open == 'n')
            return json_word(c, "null");
        return json_number(c);
    }
    const unsigned char close = open == '[' ? ']' : '}';
    if (depth >= JSON_MAX_DEPTH)
        return 0;
    c->i++;
    json_space(c);
    if (json_at(c, close)) {
        c->i++;
        return 1;
    }
    for (;;) {
        if (open == '{') {
            json_space(c);
            if (!json_string(c))
                return 0;
            json_space(c);
            if (!json_at(c, ':'))
                return 0;
            c->i++;
        }
        if (!json_value(c, depth + 1))
            return 0;
        json_space(c);
        if (json_at(c, close)) {
            c->i++;
            return 1;
        }
        if (!json_at(c, ','))
            return 0;
        c->i++;
    }
}

int rm_json_parsable(const char *text, size_t n, int whole)
{
    json_cursor c = {(const unsigned char *)text, n, 0};
    if (!json_value(&c, 0))
        return 0;
    json_space(&c);
    return !whole || c.i == n;
}
