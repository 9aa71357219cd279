/* The checks the C test programs share: each failed check prints where
 * and what, and counts in `failures` (the program exits non-zero when it
 * is not 0). Include after ringbus.h, stdio.h and string.h. */
#ifndef RINGBUS_TEST_CHECK_H
#define RINGBUS_TEST_CHECK_H

static int failures = 0;

#define EXPECT(cond)                                                      \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                   \
        }                                                                 \
    } while (0)

/* Expects `call` to return `status` and, on failure, a message that
 * contains `needle` ("" for any). */
#define EXPECT_STATUS(call, status, needle)                                        \
    do {                                                                           \
        int rc_ = (call);                                                          \
        if (rc_ != (status)) {                                                     \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", \
                    __FILE__, __LINE__, #call, ringbus_status_name(rc_), #status,  \
                    ringbus_last_error());                                         \
            failures++;                                                            \
        } else if ((status) != RINGBUS_OK && !strstr(ringbus_last_error(), needle)) { \
            fprintf(stderr, "%s:%d: %s: message \"%s\" lacks \"%s\"\n", __FILE__,  \
                    __LINE__, #call, ringbus_last_error(), needle);                \
            failures++;                                                            \
        }                                                                          \
    } while (0)

#define OK(call) EXPECT_STATUS(call, RINGBUS_OK, "")

#endif
