/*
 * WebSocket codec (RFC 6455), free of sockets and allocation: the opening handshake's key check
 * and accept value, frame heads in both directions, masking, close payloads, and the checks a
 * peer's messages must pass when tollgate reads them whole (JSON-RPC routes).
 *
 * Generic routes only tunnel bytes after the 101 and never call into this; JSON-RPC routes run
 * every frame of both directions through tg_ws_parse_head(), then tg_ws_msg_frame() and, for text,
 * tg_ws_msg_text(). The close codes returned are the ones to send to the peer that broke the rule.
 */
#ifndef TG_WS_H
#define TG_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Close codes (RFC 6455 §7.4.1 and the IANA registry) that tollgate sends or reasons about. */
#define TG_WS_CLOSE_NORMAL     1000
#define TG_WS_CLOSE_GOING_AWAY 1001
#define TG_WS_CLOSE_PROTOCOL   1002
#define TG_WS_CLOSE_NO_STATUS  1005 /* never on the wire: a close frame without a code */
#define TG_WS_CLOSE_BAD_DATA   1007 /* text that is not UTF-8 */
#define TG_WS_CLOSE_POLICY     1008
#define TG_WS_CLOSE_TOO_BIG    1009
#define TG_WS_CLOSE_INTERNAL   1011
#define TG_WS_CLOSE_RESTART    1012 /* the node failed: the client may reconnect */
#define TG_WS_CLOSE_TRY_LATER  1013

#define TG_WS_HEAD_MAX    14  /* 2 + 8 (64-bit length) + 4 (mask) */
#define TG_WS_CONTROL_MAX 125 /* payload limit of control frames (§5.5) */
#define TG_WS_REASON_MAX  123 /* a close reason: the control limit less the 2-byte code */

/* Handshake (RFC 6455 §4). */

/*
 * Whether value[0..len) (a Sec-WebSocket-Key header value, whitespace already trimmed) is the
 * base64 of 16 bytes: 22 characters of the base64 alphabet followed by "==". The 4 unused bits of
 * the last character are not checked, as the common servers do not check them either and the
 * accept value is computed over the text anyway.
 */
bool tg_ws_key_valid(const char *value, size_t len);

/*
 * Writes the Sec-WebSocket-Accept value for key[0..len), base64(SHA-1(key + the RFC's GUID)), as
 * 28 characters and a NUL into out. Aborts through tg_fatal() only if OpenSSL has no SHA-1.
 */
void tg_ws_accept(const char *key, size_t len, char out[29]);

/* Frames (RFC 6455 §5). */

enum tg_ws_opcode {
    TG_WS_CONT = 0,
    TG_WS_TEXT = 1,
    TG_WS_BINARY = 2,
    TG_WS_CLOSE = 8,
    TG_WS_PING = 9,
    TG_WS_PONG = 10
};

/* Close, ping and pong (and the reserved 0xB-0xF) have the top opcode bit set. */
static inline bool tg_ws_is_control(uint8_t opcode)
{
    return (opcode & 0x08) != 0;
}

struct tg_ws_frame {
    bool fin;
    uint8_t opcode;
    bool masked;
    uint8_t mask[4]; /* zeros when !masked */
    uint64_t len;    /* payload length */
    size_t head_len; /* 2..14 bytes */
};

/*
 * Parses the frame head at p[0..n). must_mask is true for frames from a client (which must be
 * masked) and false for frames from a server (which must not be). max_payload bounds the payload
 * length of one frame.
 *
 * Returns head_len (> 0) with f filled in; 0 when more bytes are needed (only a complete head is
 * ever reported, so the caller may call again with a longer buffer); -1 for a protocol error,
 * with *close_code set to the code to send: 1002 for RSV bits (no extension is ever negotiated),
 * a reserved opcode, a masking bit that does not match must_mask, a control frame that is
 * fragmented or longer than 125, a length not in its shortest encoding or a 64-bit length with
 * the top bit set; 1009 for a length above max_payload. Errors are found as soon as the bytes that
 * show them have arrived, so a prefix of a bad head gives 0 or the same error.
 */
ssize_t tg_ws_parse_head(const uint8_t *p, size_t n, bool must_mask, uint64_t max_payload,
                         struct tg_ws_frame *f, uint16_t *close_code);

/*
 * XORs the n payload bytes at p with mask. offset is the position of p[0] in the frame's payload,
 * so a payload that arrives in pieces can be unmasked piece by piece. Masking and unmasking are
 * the same operation.
 */
void tg_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);

/*
 * Writes the head of a frame with a payload of len bytes into out (room for TG_WS_HEAD_MAX bytes):
 * the shortest length encoding, and the masking key when mask is not NULL (frames tollgate sends
 * to a node, as a client). len must be below 2^63. Returns the number of bytes written.
 */
size_t tg_ws_write_head(uint8_t *out, bool fin, uint8_t opcode, uint64_t len, const uint8_t *mask);

/*
 * Writes a close frame's payload into out (room for TG_WS_CONTROL_MAX bytes): code in network
 * order, then reason (NULL for none; UTF-8, cut at a character boundary to TG_WS_REASON_MAX
 * bytes). code 0 writes the empty payload (a close without a status). Returns the length.
 */
size_t tg_ws_close_payload(uint8_t *out, uint16_t code, const char *reason);

/*
 * Whether a received close payload p[0..n) is valid (§5.5.1, §7.4): empty, or a code allowed on
 * the wire (1000-1003, 1007-1014, 3000-4999) followed by a UTF-8 reason, 125 bytes at most.
 * On true, *code (if not NULL) is the code received, or 1005 for an empty payload.
 */
bool tg_ws_close_valid(const uint8_t *p, size_t n, uint16_t *code);

/* Messages (§5.4): the rules across frames, for a peer whose data messages are read whole. */

/*
 * One direction's message state. Zero it and set max before the first frame; an all-zero
 * state with max 0 allows messages of any size.
 */
struct tg_ws_msg_state {
    bool in_message; /* a fragmented message is open: the next data frame must continue it */
    uint8_t opcode;  /* TEXT or BINARY: the message the last data frame belongs to */
    uint64_t size;   /* bytes of that message so far, the last frame included */
    uint64_t max;    /* websocket.max_message; 0: no limit */
    uint32_t utf8;   /* tg_ws_msg_text()'s decoder state: 0 between characters */
};

/*
 * Checks that the frame f (as parsed by tg_ws_parse_head()) may come next and counts its payload
 * in the message. Control frames may come between fragments and leave the state alone. Returns 0,
 * or the close code to send: 1002 for a continuation without an open message, a new data frame
 * inside an open message, a reserved opcode or a fragmented or over-long control frame; 1009 when
 * the message grows past max.
 */
uint16_t tg_ws_msg_frame(struct tg_ws_msg_state *s, const struct tg_ws_frame *f);

/*
 * Validates the next n (unmasked) payload bytes of a text message as UTF-8 (RFC 3629: no
 * overlong forms, surrogates or code points past U+10FFFF); a character may be split across
 * calls and frames. fin: these are the message's last bytes, so it must not end inside a
 * character. Returns 0 or 1007; after 1007 every later call returns 1007 too.
 */
uint16_t tg_ws_msg_text(struct tg_ws_msg_state *s, const uint8_t *p, size_t n, bool fin);

#endif
