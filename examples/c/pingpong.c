/* Round trip between two processes over ringbus, measured with
 * clock_gettime(CLOCK_MONOTONIC): the parent publishes a ping on one topic,
 * the child (forked) answers on another, N times. Prints the one-way
 * latency (round trip / 2) percentiles.
 *
 *   pingpong [ITERATIONS] [SIZE]
 *
 * Both sides busy-poll (RINGBUS_WAIT_SPIN) and are pinned to the first two
 * CPUs when there are two. The broker's socket is $RINGBUS_SOCKET or the
 * default path. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "ringbus.h"

#define STOP_TAG UINT64_MAX
#define WARMUP_TAG (UINT64_MAX - 1)

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Opens this side's publisher and subscriber on fresh topics. */
static void open_side(const char *out_topic, const char *in_topic, size_t size,
                      ringbus_client **client, ringbus_publisher **pub,
                      ringbus_subscriber **sub) {
    CHECK(ringbus_client_connect(NULL, client));
    ringbus_topic_config config;
    CHECK(ringbus_topic_config_init(&config));
    config.max_message_size = (uint32_t)(size < 8 ? 8 : size);
    config.capacity = 64;
    ringbus_subscribe_options options;
    CHECK(ringbus_subscribe_options_init(&options));
    options.wait = RINGBUS_WAIT_SPIN;
    CHECK(ringbus_subscriber_open(*client, in_topic, &options, sub));
    CHECK(ringbus_publisher_open(*client, out_topic, &config, pub));
}

static void pin(size_t index) {
    size_t cores[64], n = 0;
    if (ringbus_available_cores(cores, 64, &n) == RINGBUS_OK && n >= 2)
        CHECK(ringbus_pin_current_thread(cores[index]));
}

/* The child: echoes each ping's payload and tag until the stop tag. */
static int pong(const char *ping_topic, const char *pong_topic, size_t size) {
    ringbus_client *client;
    ringbus_publisher *pub;
    ringbus_subscriber *sub;
    pin(1);
    open_side(pong_topic, ping_topic, size, &client, &pub, &sub);
    uint8_t buf[65536];
    for (;;) {
        ringbus_message_info info;
        int rc = ringbus_subscriber_recv(sub, buf, sizeof buf, RINGBUS_WAIT_FOREVER, &info);
        if (rc == RINGBUS_ERR_LAGGED || rc == RINGBUS_ERR_END_OF_STREAM) continue;
        CHECK(rc);
        if (info.tag == STOP_TAG) break;
        CHECK(ringbus_publisher_publish(pub, buf, info.len, info.tag, NULL));
    }
    CHECK(ringbus_subscriber_close(sub));
    CHECK(ringbus_publisher_close(pub));
    CHECK(ringbus_client_close(client));
    return 0;
}

int main(int argc, char **argv) {
    uint64_t iterations = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    size_t size = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 64;
    if (size > 65536 || iterations == 0) {
        fprintf(stderr, "usage: %s [ITERATIONS > 0] [SIZE <= 65536]\n", argv[0]);
        return 2;
    }
    char ping_topic[64], pong_topic[64];
    snprintf(ping_topic, sizeof ping_topic, "pingpong.%d.ping", (int)getpid());
    snprintf(pong_topic, sizeof pong_topic, "pingpong.%d.pong", (int)getpid());

    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) _exit(pong(ping_topic, pong_topic, size));

    ringbus_client *client;
    ringbus_publisher *pub;
    ringbus_subscriber *sub;
    pin(0);
    open_side(ping_topic, pong_topic, size, &client, &pub, &sub);
    uint8_t *buf = calloc(1, size < 8 ? 8 : size);
    uint64_t *samples = malloc(iterations * sizeof *samples);
    if (!buf || !samples) return 1;

    /* Until the child is subscribed, pings are lost: retry until one comes
     * back. */
    for (;;) {
        CHECK(ringbus_publisher_publish(pub, buf, size, WARMUP_TAG, NULL));
        ringbus_message_info info;
        int rc = ringbus_subscriber_recv(sub, buf, size, 10 * 1000 * 1000, &info);
        if (rc == RINGBUS_OK && info.tag == WARMUP_TAG) break;
        if (rc != RINGBUS_ERR_TIMEOUT && rc != RINGBUS_OK) CHECK(rc);
    }
    /* Drain answers to the other warm-up pings. */
    for (;;) {
        ringbus_message_info info;
        int rc = ringbus_subscriber_recv(sub, buf, size, 50 * 1000 * 1000, &info);
        if (rc == RINGBUS_ERR_TIMEOUT) break;
        CHECK(rc);
    }

    for (uint64_t i = 0; i < iterations; i++) {
        uint64_t t0 = now_ns();
        /* Zero-copy publish: the payload is written in the ring. */
        void *slot;
        CHECK(ringbus_publisher_loan(pub, size, &slot));
        memcpy(slot, &i, size < sizeof i ? size : sizeof i);
        CHECK(ringbus_publisher_commit(pub, size, i, NULL));
        ringbus_message_info info;
        CHECK(ringbus_subscriber_recv(sub, buf, size, RINGBUS_WAIT_FOREVER, &info));
        uint64_t t1 = now_ns();
        if (info.tag != i || info.len != size) {
            fprintf(stderr, "round %llu: answer with tag %llu, %zu bytes\n",
                    (unsigned long long)i, (unsigned long long)info.tag, info.len);
            return 1;
        }
        samples[i] = (t1 - t0) / 2;
    }
    CHECK(ringbus_publisher_publish(pub, buf, 0, STOP_TAG, NULL));
    int status = 0;
    waitpid(child, &status, 0);

    qsort(samples, iterations, sizeof *samples, cmp_u64);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < iterations; i++) sum += samples[i];
#define PCT(p) samples[(uint64_t)((double)(iterations - 1) * (p))]
    printf("C ping-pong over ringbus: %llu round trips, %zu-byte messages, one-way latency "
           "(round trip / 2): min %llu ns, p50 %llu ns, p90 %llu ns, p99 %llu ns, "
           "p99.9 %llu ns, max %llu ns, mean %llu ns\n",
           (unsigned long long)iterations, size, (unsigned long long)samples[0],
           (unsigned long long)PCT(0.50), (unsigned long long)PCT(0.90),
           (unsigned long long)PCT(0.99), (unsigned long long)PCT(0.999),
           (unsigned long long)samples[iterations - 1], (unsigned long long)(sum / iterations));
    free(samples);
    free(buf);
    CHECK(ringbus_subscriber_close(sub));
    CHECK(ringbus_publisher_close(pub));
    CHECK(ringbus_client_close(client));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
