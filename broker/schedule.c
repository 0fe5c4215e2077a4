/*
 * The schedule model: names and the schedule_t a backend hands out. Checking a
 * definition is broker.c's (the front door); storing and firing is the backend's
 * (broker/redis/schedules.c); reading cron is scheduler/'s.
 */
#include <ctype.h>
#include <string.h>

#include "broker/internal.h"

/* ---- Schedule API ---- */

bool schedule_name_valid(const char *name)
{
    size_t len = name ? strnlen(name, SCHEDULE_NAME_MAX + 1) : 0;
    if (len == 0 || len > SCHEDULE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)name[i]) && !strchr("._:-", name[i]))
            return false;
    }
    return true;
}

void schedule_free(schedule_t *s)
{
    if (!s)
        return;
    hp_free(s->cron);
    hp_free(s->tz);
    hp_free(s->job);
    hp_free(s->history);
    hp_free(s);
}

void schedules_free(schedule_t **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        schedule_free(list[i]);
    hp_free(list);
}
