/*
 * Diagnostic log: one JSON object per line on stderr,
 *   {"ts":"2026-11-24T19:15:02.123Z","level":"info","msg":"...",<extra fields>}
 *
 * Before the log writer runs (startup, `tollgate check`) and after it stopped, a line is written
 * to fd 2 with one write(2) by the calling thread. While it runs (tg_logwriter_start() in
 * obs/accesslog.h), lines go to a bounded in-memory queue that the writer thread drains, so no
 * worker ever blocks on stderr; a line that does not fit in the queue (TG_LOG_QUEUE_BYTES) is
 * dropped and counted in tg_log_dropped().
 *
 * All functions are thread-safe.
 */
#ifndef TG_LOG_H
#define TG_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h" /* enum tg_log_level */
#include "core/str.h"

/* Bytes of diagnostic lines the queue holds while the writer runs; beyond, lines are dropped. */
#define TG_LOG_QUEUE_BYTES (256 * 1024)
/* A message longer than this (after printf formatting) is cut; extra fields are never cut. */
#define TG_LOG_MSG_MAX 4096

/* Sets the lowest level written (enum tg_log_level); the default is TG_LOG_INFO. */
void tg_log_set_level(int level);
/* True when a line of this level would be written: check it before costly argument work. */
bool tg_log_enabled(int level);

/* Logs a printf-formatted message at level; does nothing when the level is filtered out. */
void tg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Same as tg_log() with extra members appended to the object. json_fields is pre-formatted JSON
 * without the surrounding braces or a leading comma, e.g. "\"errors\":[\"a.yaml:3:5: x\"]";
 * the caller guarantees it is valid. NULL or "" adds nothing.
 */
void tg_log_fields(int level, const char *json_fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Diagnostic lines dropped because the queue was full (relaxed; any thread). Lines lost to a
 * failed write and access-log drops are counted by the writer: tg_logwriter_dropped_total()
 * sums them all. */
uint64_t tg_log_dropped(void);

/*
 * For the log writer (obs/accesslog.c) only.
 *
 * tg__log_queue_open() sends lines to the queue from now on; a thread of their own (tg-log-err)
 * writes them to fd 2, so a blocked stdout never holds back stderr (wake_fd is unused).
 * tg__log_queue_close() sends lines straight to fd 2 again after that thread wrote what was
 * queued (a stderr blocked for more than a second is given up on; its lines count as dropped).
 * tg__log_queue_swap() hands the queued bytes to the single consumer, which must be done with
 * them before it calls tg__log_queue_swap() again (the queue double-buffers).
 */
void tg__log_queue_open(int wake_fd);
void tg__log_queue_close(void);
struct tg_str tg__log_queue_swap(void);

#endif
