/*
 * WebSocket codec (ws.h), written from RFC 6455.
 */
#include "http/ws.h"

#include <string.h>

#include <openssl/evp.h>

#include "core/core.h"

/* §1.3: the server proves it read the handshake by hashing the key with this GUID. */
static const char tg__ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static bool tg__ws_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

bool tg_ws_key_valid(const char *value, size_t len)
{
    /* 16 bytes are 128 bits: 21 full characters, one with 2 bits, and two pad characters. */
    if (len != 24 || value[22] != '=' || value[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!tg__ws_base64_char(value[i]))
            return false;
    return true;
}

void tg_ws_accept(const char *key, size_t len, char out[29])
{
    /* Handshakes are rare next to requests, so a context per call costs nothing that matters. */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (ctx == NULL || !EVP_DigestInit_ex2(ctx, EVP_sha1(), NULL) ||
        !EVP_DigestUpdate(ctx, key, len) ||
        !EVP_DigestUpdate(ctx, tg__ws_guid, sizeof(tg__ws_guid) - 1) ||
        !EVP_DigestFinal_ex(ctx, digest, &n) || n != 20)
        tg_fatal("SHA-1 failed");
    EVP_MD_CTX_free(ctx);
    EVP_EncodeBlock((unsigned char *)out, digest, 20); /* 28 characters and a NUL */
}

static bool tg__ws_opcode_known(uint8_t opcode)
{
    return opcode <= TG_WS_BINARY || (opcode >= TG_WS_CLOSE && opcode <= TG_WS_PONG);
}

/* The checks the first two bytes allow; returns 0 or the close code. */
static uint16_t tg__ws_check_start(const uint8_t *p, size_t n, bool must_mask)
{
    uint8_t opcode = p[0] & 0x0f;
    bool control = tg_ws_is_control(opcode);

    /* RSV1-3 mean an extension (permessage-deflate sets RSV1); none may be negotiated where
     * tollgate reads frames, so the proxy must drop Sec-WebSocket-Extensions there. */
    if ((p[0] & 0x70) != 0 || !tg__ws_opcode_known(opcode) || (control && !(p[0] & 0x80)))
        return TG_WS_CLOSE_PROTOCOL;
    if (n < 2)
        return 0;
    if (((p[1] & 0x80) != 0) != must_mask || (control && (p[1] & 0x7f) > TG_WS_CONTROL_MAX))
        return TG_WS_CLOSE_PROTOCOL;
    return 0;
}

static uint64_t tg__ws_load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * Reads the payload length that starts at p[1] into *len; the caller made sure the extended
 * length bytes are there. Returns 0 or the close code for a length not in its shortest form.
 */
static uint16_t tg__ws_read_len(const uint8_t *p, uint64_t *len)
{
    uint64_t v = p[1] & 0x7f;

    if (v == 126) {
        v = tg__ws_load_be(p + 2, 2);
        if (v < 126)
            return TG_WS_CLOSE_PROTOCOL;
    } else if (v == 127) {
        v = tg__ws_load_be(p + 2, 8);
        if ((v >> 63) != 0 || v <= 0xffff)
            return TG_WS_CLOSE_PROTOCOL;
    }
    *len = v;
    return 0;
}

ssize_t tg_ws_parse_head(const uint8_t *p, size_t n, bool must_mask, uint64_t max_payload,
                         struct tg_ws_frame *f, uint16_t *close_code)
{
    size_t need = 2, mask_len = must_mask ? 4 : 0;
    uint16_t code = 0;
    uint64_t len = 0;
    ssize_t r = 0;

    if (n == 0)
        goto out;
    code = tg__ws_check_start(p, n, must_mask);
    if (code != 0 || n < 2)
        goto out;
    need += (p[1] & 0x7f) == 126 ? 2 : (p[1] & 0x7f) == 127 ? 8 : 0;
    if (n < need)
        goto out;
    /* The length is checked before the masking key arrives, so a bad one is refused at once. */
    code = tg__ws_read_len(p, &len);
    if (code == 0 && len > max_payload)
        code = TG_WS_CLOSE_TOO_BIG;
    if (code != 0 || n < need + mask_len)
        goto out;
    f->fin = (p[0] & 0x80) != 0;
    f->opcode = p[0] & 0x0f;
    f->masked = must_mask;
    memset(f->mask, 0, 4);
    memcpy(f->mask, p + need, mask_len);
    f->len = len;
    f->head_len = need + mask_len;
    r = (ssize_t)f->head_len;
out:
    if (code != 0) {
        *close_code = code;
        r = -1;
    }
    return r;
}

void tg_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    uint8_t key[8];
    uint64_t k, w[4];
    size_t i = 0;

    /* The key rotated to p's position and repeated twice: a multiple of 4 keeps it in phase. */
    for (size_t j = 0; j < 8; j++)
        key[j] = mask[(offset + j) & 3];
    memcpy(&k, key, 8);
    /* memcpy() keeps the word accesses legal at any alignment; compilers make them plain loads. */
    for (; n - i >= 32; i += 32) {
        memcpy(w, p + i, 32);
        w[0] ^= k;
        w[1] ^= k;
        w[2] ^= k;
        w[3] ^= k;
        memcpy(p + i, w, 32);
    }
    for (; n - i >= 8; i += 8) {
        memcpy(w, p + i, 8);
        w[0] ^= k;
        memcpy(p + i, w, 8);
    }
    for (; i < n; i++)
        p[i] ^= key[i & 7];
}

size_t tg_ws_write_head(uint8_t *out, bool fin, uint8_t opcode, uint64_t len, const uint8_t *mask)
{
    uint8_t maskbit = mask != NULL ? 0x80 : 0;
    size_t n = 2;

    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        out[1] = maskbit | (uint8_t)len;
    } else if (len <= 0xffff) {
        out[1] = maskbit | 126;
        for (size_t i = 0; i < 2; i++)
            out[n++] = (uint8_t)(len >> (8 * (1 - i)));
    } else {
        out[1] = maskbit | 127;
        for (size_t i = 0; i < 8; i++)
            out[n++] = (uint8_t)(len >> (8 * (7 - i)));
    }
    if (mask != NULL) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

/*
 * UTF-8 decoding state (tg_ws_msg_state.utf8): 0 between characters; inside one, the number of
 * continuation bytes still due in bits 0-1 and the range the next one must fall in in bits 8-15
 * (lowest) and 16-23 (highest). The ranges are Unicode's table 3-7 of well-formed sequences.
 */
#define TG__UTF8_BAD             UINT32_MAX
#define TG__UTF8_NEXT(n, lo, hi) ((uint32_t)(n) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)

static uint32_t tg__utf8_lead(uint8_t c)
{
    if (c < 0x80)
        return 0;
    if (c >= 0xc2 && c <= 0xdf)
        return TG__UTF8_NEXT(1, 0x80, 0xbf);
    if (c == 0xe0)
        return TG__UTF8_NEXT(2, 0xa0, 0xbf); /* overlong below U+0800 */
    if (c == 0xed)
        return TG__UTF8_NEXT(2, 0x80, 0x9f); /* surrogates */
    if (c >= 0xe1 && c <= 0xef)
        return TG__UTF8_NEXT(2, 0x80, 0xbf);
    if (c == 0xf0)
        return TG__UTF8_NEXT(3, 0x90, 0xbf); /* overlong below U+10000 */
    if (c >= 0xf1 && c <= 0xf3)
        return TG__UTF8_NEXT(3, 0x80, 0xbf);
    if (c == 0xf4)
        return TG__UTF8_NEXT(3, 0x80, 0x8f); /* past U+10FFFF */
    return TG__UTF8_BAD;                     /* continuation, C0, C1, F5-FF */
}

static uint32_t tg__utf8_step(uint32_t st, uint8_t c)
{
    uint32_t due = st & 3;

    if (st == 0)
        return tg__utf8_lead(c);
    if (c < ((st >> 8) & 0xff) || c > ((st >> 16) & 0xff))
        return TG__UTF8_BAD;
    return due > 1 ? TG__UTF8_NEXT(due - 1, 0x80, 0xbf) : 0;
}

/* Validates p[0..n) from state st; returns the state after it (TG__UTF8_BAD is final). */
static uint32_t tg__utf8_run(uint32_t st, const uint8_t *p, size_t n)
{
    const uint64_t high = 0x8080808080808080ULL;
    size_t i = 0;

    while (i < n && st != TG__UTF8_BAD) {
        uint64_t w;

        /* JSON-RPC is mostly ASCII: skip it a word at a time between characters. */
        if (st == 0 && n - i >= 8) {
            memcpy(&w, p + i, 8);
            if ((w & high) == 0) {
                i += 8;
                continue;
            }
        }
        st = tg__utf8_step(st, p[i++]);
    }
    return st;
}

static bool tg__ws_close_code_ok(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

size_t tg_ws_close_payload(uint8_t *out, uint16_t code, const char *reason)
{
    size_t n = reason != NULL ? strlen(reason) : 0;

    if (code == 0)
        return 0;
    if (n > TG_WS_REASON_MAX) {
        n = TG_WS_REASON_MAX;
        /* Back off to a character start so the peer does not close us for bad UTF-8 (1007). */
        while (n > 0 && ((uint8_t)reason[n] & 0xc0) == 0x80)
            n--;
    }
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (n > 0)
        memcpy(out + 2, reason, n);
    return 2 + n;
}

bool tg_ws_close_valid(const uint8_t *p, size_t n, uint16_t *code)
{
    uint16_t c;

    if (n == 0) {
        c = TG_WS_CLOSE_NO_STATUS;
        goto ok;
    }
    if (n < 2 || n > TG_WS_CONTROL_MAX)
        return false;
    c = (uint16_t)(p[0] << 8 | p[1]);
    if (!tg__ws_close_code_ok(c) || tg__utf8_run(0, p + 2, n - 2) != 0)
        return false;
ok:
    if (code != NULL)
        *code = c;
    return true;
}

/* The rules for a data frame; returns 0 or the close code. */
static uint16_t tg__ws_msg_data(struct tg_ws_msg_state *s, const struct tg_ws_frame *f)
{
    uint64_t max = s->max != 0 ? s->max : UINT64_MAX;

    if (f->opcode == TG_WS_CONT) {
        if (!s->in_message)
            return TG_WS_CLOSE_PROTOCOL;
    } else {
        if (s->in_message)
            return TG_WS_CLOSE_PROTOCOL; /* interleaving needs an extension (§5.4) */
        s->opcode = f->opcode;
        s->size = 0;
        if (s->utf8 != TG__UTF8_BAD)
            s->utf8 = 0;
    }
    /* Written so that the sum cannot wrap: frames may each claim up to 2^63 - 1 bytes. */
    if (f->len > max - s->size)
        return TG_WS_CLOSE_TOO_BIG;
    s->size += f->len;
    s->in_message = !f->fin;
    return 0;
}

uint16_t tg_ws_msg_frame(struct tg_ws_msg_state *s, const struct tg_ws_frame *f)
{
    if (!tg__ws_opcode_known(f->opcode))
        return TG_WS_CLOSE_PROTOCOL;
    if (tg_ws_is_control(f->opcode))
        return f->fin && f->len <= TG_WS_CONTROL_MAX ? 0 : TG_WS_CLOSE_PROTOCOL;
    return tg__ws_msg_data(s, f);
}

uint16_t tg_ws_msg_text(struct tg_ws_msg_state *s, const uint8_t *p, size_t n, bool fin)
{
    s->utf8 = tg__utf8_run(s->utf8, p, n);
    if (fin && s->utf8 != 0)
        s->utf8 = TG__UTF8_BAD; /* the message ends inside a character */
    return s->utf8 == TG__UTF8_BAD ? TG_WS_CLOSE_BAD_DATA : 0;
}
