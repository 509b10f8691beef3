/* Configurations and tasks as JSON text, the form a model file's metadata stores them in and a configuration
 * file gives them in. */
#ifndef REPMODE_CONFIG_JSON_H
#define REPMODE_CONFIG_JSON_H

#include <cjson/cJSON.h>

#include "base/internal.h"
#include "repmode/model.h"

/* repmode.tasks: tasks[which[j]] for j < n (which NULL: the first n), in that order. */
char *rm_tasks_to_json(const rm_task *tasks, const int *which, int n);
/* The members of a configuration object (repmode.config, or a configuration file's top level) into cfg, each read
 * by its field's one reader: types and names are checked (ranges are rm_config_validate's); a key given twice, or
 * one that is neither a field of docs/network.md §2.1 but "tasks" nor listed in `others` (NULL-terminated, or
 * NULL), is refused. Absent fields keep cfg's values. `where` starts every message. */
rm_status rm_config_read_object(rm_ctx *ctx, const char *where, const cJSON *obj, const char *const *others,
                                rm_config *cfg);
/* A task list (repmode.tasks, or a configuration file's "tasks"): *tasks allocated (free() it; NULL for an empty
 * list, which rm_config_validate refuses), *n_tasks its length. Messages start "<where>[i] ('name'): ". */
rm_status rm_tasks_read(rm_ctx *ctx, const char *where, const cJSON *list, rm_task **tasks, int *n_tasks);
/* A model file's metadata: fills cfg from the two JSON texts (base_channels, levels, in_channels and out_channels
 * must be given; other fields absent from repmode.config keep cfg's values); *tasks is allocated (free() it) and
 * cfg->tasks points at it. `where` (the file) starts every message. */
rm_status rm_config_from_json(rm_ctx *ctx, const char *where, const char *config_json, const char *tasks_json,
                              rm_config *cfg, rm_task **tasks);

#endif /* REPMODE_CONFIG_JSON_H */
