/* A training run's options as JSON (rm_train_options_json): what a trained model's provenance records of how it
 * trained, in the names of the configuration file and the command line. */
#include "base/internal.h"
#include "base/json_write.h"
#include "repmode/trainer.h"

static cJSON *optimizer_json(const rm_optim_config *o)
{
    cJSON *obj = cJSON_CreateObject();
    const int ok = obj && rm_json_put(obj, "kind", cJSON_CreateString(o->kind == RM_OPTIM_ADAMW ? "adamw" : "adam")) &&
                   rm_json_put(obj, "lr", rm_json_float(o->lr)) && rm_json_put(obj, "beta1", rm_json_float(o->beta1)) &&
                   rm_json_put(obj, "beta2", rm_json_float(o->beta2)) &&
                   rm_json_put(obj, "eps", rm_json_float(o->eps)) &&
                   rm_json_put(obj, "weight_decay", rm_json_float(o->weight_decay));
    return rm_json_whole(obj, ok);
}

static cJSON *schedule_json(const rm_schedule *s)
{
    cJSON *obj = cJSON_CreateObject();
    int ok = obj != NULL;
    if (ok && s->kind == RM_SCHEDULE_WARMUP_COSINE)
        ok = rm_json_put(obj, "kind", cJSON_CreateString("cosine")) &&
             rm_json_put(obj, "warmup", cJSON_CreateNumber((double)s->warmup_steps)) &&
             rm_json_put(obj, "total_steps", cJSON_CreateNumber((double)s->total_steps)) &&
             rm_json_put(obj, "floor", rm_json_float(s->floor_ratio));
    else if (ok)
        ok = rm_json_put(obj, "kind", cJSON_CreateString("constant"));
    return rm_json_whole(obj, ok);
}

/* The keys of a configuration file's "augment" object, so that a recorded recipe can be given back as one. */
static cJSON *augment_json(const rm_augment *a)
{
    cJSON *obj = cJSON_CreateObject();
    const int ok = obj && rm_json_put(obj, "flips", cJSON_CreateBool(a->flips)) &&
                   rm_json_put(obj, "rotations", cJSON_CreateBool(a->rotations)) &&
                   rm_json_put(obj, "jitter", rm_json_float(a->jitter)) &&
                   rm_json_put(obj, "blur", rm_json_float(a->blur)) &&
                   rm_json_put(obj, "gamma", rm_json_float(a->gamma)) &&
                   rm_json_put(obj, "contrast", rm_json_float(a->contrast)) &&
                   rm_json_put(obj, "illumination", rm_json_float(a->illumination)) &&
                   rm_json_put(obj, "brightness", rm_json_float(a->brightness)) &&
                   rm_json_put(obj, "noise", rm_json_float(a->noise)) &&
                   rm_json_put(obj, "depth_shift", cJSON_CreateNumber((double)a->depth_shift));
    return rm_json_whole(obj, ok);
}

char *rm_train_options_json(const rm_train_options *opt)
{
    if (!opt)
        return NULL;
    cJSON *root = cJSON_CreateObject();
    const double patch[3] = {(double)opt->patch[0], (double)opt->patch[1], (double)opt->patch[2]};
    int ok =
        root && rm_json_put(root, "patch", cJSON_CreateDoubleArray(patch, 3)) &&
        rm_json_put(root, "batch", cJSON_CreateNumber(opt->batch)) &&
        rm_json_put(root, "optimizer", optimizer_json(&opt->optim)) &&
        rm_json_put(root, "schedule", schedule_json(&opt->schedule)) &&
        rm_json_put(root, "smoothing", rm_json_float(opt->smoothing)) &&
        rm_json_put(root, "sampling", cJSON_CreateString(opt->sampling == RM_SAMPLING_BUCKETS ? "buckets" : "random"));
    if (ok && opt->sampling == RM_SAMPLING_BUCKETS)
        ok = rm_json_put(root, "bucket_low", rm_json_float(opt->bucket_low));
    ok = ok && rm_json_put(root, "augment", augment_json(&opt->augment)) &&
         rm_json_put(root, "ema", rm_json_float(opt->ema));
    return rm_json_print(root, ok);
}
