/* Building JSON text with cJSON so that a text is whole or absent: every add checked, floats at their shortest. */
#ifndef REPMODE_JSON_WRITE_H
#define REPMODE_JSON_WRITE_H

#include <cjson/cJSON.h>

/* The shortest decimal that reads back as the same float, as a raw number: 0.1f prints as 0.1, not
 * 0.10000000149011612. NULL when out of memory. */
cJSON *rm_json_float(float v);
/* Adds item to obj (to the array obj when key is NULL), or deletes it: 0 when item is NULL or cannot be added, so a
 * text built while memory runs out fails whole instead of missing fields. */
int rm_json_put(cJSON *obj, const char *key, cJSON *item);
/* obj when ok, else NULL with obj deleted: a part built whole or not at all. */
cJSON *rm_json_whole(cJSON *obj, int ok);
/* The compact text of root when ok (else NULL), root deleted either way; release the text with rm_free. */
char *rm_json_print(cJSON *root, int ok);

#endif /* REPMODE_JSON_WRITE_H */
