/* The MoDE layer's arithmetic: the task gate, the merge of five experts into one 5³ kernel per task, and the
 * gradient of that merge (docs/network.md §3.3-§3.4 and §3.6). */
#ifndef REPMODE_MODE_LAYER_H
#define REPMODE_MODE_LAYER_H

#include "model/model_impl.h"

#define RM_MODE_KERNEL 5
#define RM_MODE_TAPS 125

/* Whether `task` uses the unit's added expert (task-incremental learning, docs/network.md §5.5): the unit has one and
 * the task is the one it was added with or a later one. */
int rm_mode_uses_added(const rm_unit *u, int task);

/* The gate rows of the unit: RM_N_EXPERTS, or RM_MAX_EXPERTS with an added expert. */
int rm_mode_gate_rows(const rm_unit *u);

/* g (E, co), E = rm_mode_gate_rows: the softmax over the task's experts of gate.weight[:, task] + gate.bias, for
 * every output channel; an expert the task does not use gets exactly 0. */
void rm_mode_gate(const rm_unit *u, int task, int n_tasks, float *g);

/* The same with σ·ε added to every logit, ε standard normal drawn from (key, expert, channel) alone: one Monte
 * Carlo pass's gate (docs/network.md §6.3). σ = 0 is rm_mode_gate. */
void rm_mode_gate_noisy(const rm_unit *u, int task, int n_tasks, double sigma, uint64_t key, float *g);

/* The standard normal of (key, counter): Box–Muller on two hashes, the same on every machine. */
double rm_mode_gate_normal(uint64_t key, uint64_t counter);

/* w (co, ci, 5, 5, 5) = Σ_e g[e, o] · expert e zero-padded to 5³ (A-experts as 1³ conv times their pool), over the
 * experts `task` uses (a planar unit: w (co, ci, 1, 5, 5) from its 2D experts, 5², 3², 1²): an old task's kernel is
 * made by exactly the operations it was made by before an expert was added. */
void rm_mode_merge(rm_ctx *ctx, const rm_unit *u, int task, const float *g, float *w);

/* Given dw, the gradient of the merged kernel of `task` (gate g), adds the gradients of the experts `task` uses and
 * of the gate's column `task` and bias into their rm_param grads; a frozen tensor (grad NULL) gets none. */
void rm_mode_merge_backward(rm_ctx *ctx, const rm_unit *u, int task, int n_tasks, const float *g, const float *dw);

#endif /* REPMODE_MODE_LAYER_H */
