/* Configurations and tasks as JSON text, the form a model file's metadata stores them in. */
#ifndef REPMODE_CONFIG_JSON_H
#define REPMODE_CONFIG_JSON_H

#include "base/internal.h"
#include "repmode/model.h"

/* repmode.tasks: tasks[which[j]] for j < n (which NULL: the first n), in that order. */
char *rm_tasks_to_json(const rm_task *tasks, const int *which, int n);
/* Fills cfg's fields from the two JSON texts (fields absent from repmode.config keep cfg's values); *tasks is
 * allocated (free() it) and cfg->tasks points at it. `where` (the file) starts every message. */
rm_status rm_config_from_json(rm_ctx *ctx, const char *where, const char *config_json, const char *tasks_json,
                              rm_config *cfg, rm_task **tasks);

#endif /* REPMODE_CONFIG_JSON_H */
