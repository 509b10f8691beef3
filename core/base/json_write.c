/* Building JSON text with cJSON (json_write.h). */
#include "base/json_write.h"

#include <stdio.h>
#include <stdlib.h>

cJSON *rm_json_float(float v)
{
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    return cJSON_CreateRaw(buf);
}

int rm_json_put(cJSON *obj, const char *key, cJSON *item)
{
    if (item && (key ? cJSON_AddItemToObject(obj, key, item) : cJSON_AddItemToArray(obj, item)))
        return 1;
    cJSON_Delete(item);
    return 0;
}

cJSON *rm_json_whole(cJSON *obj, int ok)
{
    if (ok)
        return obj;
    cJSON_Delete(obj);
    return NULL;
}

char *rm_json_print(cJSON *root, int ok)
{
    char *text = root && ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}
