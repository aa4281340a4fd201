/*
 * The /metrics page: every counter, gauge and histogram of the instance in the Prometheus text
 * format 0.0.4, summed across workers at scrape time. Control thread only.
 */
#ifndef TG_PROMETHEUS_H
#define TG_PROMETHEUS_H

struct tg_sbuf;

void tg_prometheus_render(struct tg_sbuf *out);

#endif
