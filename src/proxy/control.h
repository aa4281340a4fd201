/*
 * The control thread: `tollgate run` from start to exit, and configuration reloads (SIGHUP or
 * POST /reload on the admin listener).
 */
#ifndef TG_CONTROL_H
#define TG_CONTROL_H

struct tg_sbuf;

/* Runs the gateway on the configuration file at path until it is stopped. Returns the exit
 * code: 0, 1 (runtime failure or requests cut off at shutdown) or 2 (bad configuration). */
int tg_control_run(const char *path, const char *version);

/*
 * Loads, validates and swaps in the configuration file again (control thread only). Writes the
 * JSON reply into reply and returns its HTTP status: 200, 400 (the file or a resource it names is
 * invalid: nothing changed) or 409 (shutting down).
 */
int tg_control_reload(struct tg_sbuf *reply);

#endif
