/*
 * api/jobspec.h -- a job as the API receives it (JSON) turned into a job_spec_t.
 *
 * Every field is checked by type and named in the message; the broker checks the
 * limits. The payload is kept as the client's own bytes (found in the body by a
 * scan, not re-encoded), so 0.1 stays 0.1 and a 30-digit integer stays whole.
 */
#ifndef HP_API_JOBSPEC_H
#define HP_API_JOBSPEC_H

#include "broker/broker.h"

typedef struct jobspec_s {
    job_spec_t spec;
    void *doc; /* the parsed JSON (json_t), which owns the strings spec points to */
    char *payload;
    const char **tags;
    char *idempotency_key;
    char request_hash[65];
} jobspec_t;

/* One job from a request body (a JSON object). */
int jobspec_parse(const char *body, size_t len, jobspec_t *out, char *err, size_t errlen);
/* {"jobs": [...]} or a bare array, up to JOB_BATCH_MAX: *errors[i] is NULL or why
 * item i is refused (hp_free each and the arrays; jobspec_cleanup each spec).
 * Fails as a whole only when the body itself is not such a list. */
int jobspec_parse_batch(const char *body, size_t len, jobspec_t **specs, char ***errors, size_t *n,
                        char *err, size_t errlen);
/* Idempotency-Key, namespaced by the token, with the body's hash. */
void jobspec_set_idempotency(jobspec_t *js, const char *token, const char *key, const char *body,
                             size_t len);
void jobspec_cleanup(jobspec_t *js);

#endif
