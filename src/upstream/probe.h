/*
 * Active health checks (issue 4, DESIGN §4): the control thread probes the nodes of every
 * service that has health.active, so the probe load on a node is the same whatever the number
 * of workers. Workers only read the outcome: the TG_NODE_DOWN and TG_NODE_LAGGING bits of each
 * node's health flags, and its head block.
 *
 * Every `interval` a service runs one round: one probe per node, started a few milliseconds
 * apart so a service with many nodes does not send a burst, each bounded by `timeout`. A node
 * has at most one probe in flight; a node whose previous probe is still running sits the round
 * out. `fall` failed probes in a row mark a node down, `rise` good ones bring it back. For
 * JSON-RPC services, the end of a round compares the heads: a node more than max_block_lag
 * blocks behind the best node that is up, syncing, or stalled for stall_after while others
 * moved is lagging until it catches up.
 */
#ifndef TG_PROBE_H
#define TG_PROBE_H

struct tg_loop;

/*
 * Starts probing on the control loop; control thread only, once, after the workers started.
 * The prober follows tg_instance.rt: each tick reads the current snapshot, so services and
 * nodes added or changed by a reload are probed from the next tick on (at most 250 ms later).
 * Nodes kept by a reload keep their probe state.
 */
void tg_probe_start(struct tg_loop *control_loop);

/*
 * Cancels the probes in flight (their outcome is not recorded), releases the node references
 * they hold and disarms the prober's timer. Control thread only, before the control loop is
 * freed. Does nothing when tg_probe_start() was not called.
 */
void tg_probe_stop(void);

#endif
