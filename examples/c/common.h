/* Helpers shared by the C examples: error reporting and the test payload
 * (message i has a length and bytes derived from i, so a subscriber can
 * check that every message arrived intact and in order). */
#ifndef RINGBUS_EXAMPLES_COMMON_H
#define RINGBUS_EXAMPLES_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ringbus.h"

/* Exits with the library's message when a call fails. */
#define CHECK(call)                                                                  \
    do {                                                                             \
        int rc_ = (call);                                                            \
        if (rc_ != RINGBUS_OK) {                                                     \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call, \
                    ringbus_status_name(rc_), ringbus_last_error());                 \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* Length of test message i, at most max (0 included, every size reached). */
static inline size_t payload_len(uint64_t i, size_t max) {
    return (size_t)((i * 7919u) % (max + 1));
}

static inline uint8_t payload_byte(uint64_t i, size_t j) {
    return (uint8_t)(i * 31u + j * 7u + (i >> 8));
}

static inline void payload_fill(uint8_t *buf, uint64_t i, size_t len) {
    for (size_t j = 0; j < len; j++) buf[j] = payload_byte(i, j);
}

/* 1 if buf holds test message i of length len. */
static inline int payload_ok(const uint8_t *buf, uint64_t i, size_t len, size_t max) {
    if (len != payload_len(i, max)) return 0;
    for (size_t j = 0; j < len; j++)
        if (buf[j] != payload_byte(i, j)) return 0;
    return 1;
}

#endif
