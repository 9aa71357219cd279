/* Exercises the C API's contract against a live broker ($RINGBUS_SOCKET):
 * results, metadata, and every error path (NULL pointers, closed and
 * foreign handles, buffers too small, bad UTF-8, reserved options, loan and
 * zero-copy state). Patterns and filters: pattern_filter_test.c. Exits 0 when every check passes; prints each failure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringbus.h"

#include "check.h"

static const int64_t MS = 1000 * 1000;

static void test_library(void) {
    char v[32];
    unsigned n = ringbus_version_number();
    snprintf(v, sizeof v, "%u.%u.%u", n / 1000000, n / 1000 % 1000, n % 1000);
    EXPECT(strcmp(ringbus_version(), v) == 0);
    EXPECT(strcmp(ringbus_status_name(RINGBUS_ERR_TIMEOUT), "RINGBUS_ERR_TIMEOUT") == 0);
    EXPECT(strcmp(ringbus_status_name(12345), "RINGBUS_UNKNOWN_STATUS") == 0);
    EXPECT(strcmp(ringbus_status_name(RINGBUS_ERR_FILTER_FAILED), "RINGBUS_ERR_FILTER_FAILED") == 0);
    uint64_t t = ringbus_now_ns();
    EXPECT(t > 0 && ringbus_now_ns() >= t);

    size_t cores[256], count = 0;
    OK(ringbus_available_cores(cores, 256, &count));
    EXPECT(count >= 1);
    EXPECT_STATUS(ringbus_available_cores(NULL, 0, &count), RINGBUS_ERR_BUFFER_TOO_SMALL,
                  "CPUs available");
    EXPECT_STATUS(ringbus_available_cores(cores, 4, NULL), RINGBUS_ERR_NULL_POINTER, "count");
    OK(ringbus_pin_current_thread(cores[0]));
    EXPECT_STATUS(ringbus_pin_current_thread(100000), RINGBUS_ERR_INVALID_ARGUMENT, "100000");
    EXPECT_STATUS(ringbus_topic_config_init(NULL), RINGBUS_ERR_NULL_POINTER, "config");
    EXPECT_STATUS(ringbus_subscribe_options_init(NULL), RINGBUS_ERR_NULL_POINTER, "options");
}

static void test_connect(void) {
    ringbus_client *c = NULL;
    EXPECT_STATUS(ringbus_client_connect(NULL, NULL), RINGBUS_ERR_NULL_POINTER, "client");
    EXPECT_STATUS(ringbus_client_connect("/nonexistent/ringbus.sock", &c), RINGBUS_ERR_NO_BROKER,
                  "ringbus serve");
    EXPECT(c == NULL);
    EXPECT_STATUS(ringbus_client_connect("\xff\xfe", &c), RINGBUS_ERR_INVALID_ARGUMENT,
                  "UTF-8");
    EXPECT_STATUS(ringbus_client_close(NULL), RINGBUS_ERR_NULL_POINTER, "NULL");
}

/* Copying publish and receive, metadata, buffer sizes, loans. */
/* What a batch receive's callback saw; it ends the batch after
   `stop_after` messages (0: never). */
struct batch_seen {
    size_t n, stop_after;
    uint64_t seq[16];
    size_t len[16];
};

static int on_batch_message(const ringbus_message_info *info, const uint8_t *data, size_t len,
                            void *user) {
    struct batch_seen *s = user;
    EXPECT(info->len == len && (len == 0 || data != NULL));
    if (s->n < 16) {
        s->seq[s->n] = info->sequence;
        s->len[s->n] = len;
    }
    s->n++;
    return s->stop_after == 0 || s->n < s->stop_after;
}

static void test_overwrite_topic(ringbus_client *client) {
    ringbus_publisher *pub = NULL;
    ringbus_subscriber *sub = NULL;
    ringbus_topic_config config;
    OK(ringbus_topic_config_init(&config));
    EXPECT(config.max_message_size == 1024 && config.capacity == 1024 &&
           config.mode == RINGBUS_MODE_OVERWRITE);
    config.max_message_size = 256;
    config.capacity = 8;

    EXPECT_STATUS(ringbus_publisher_open(client, NULL, &config, &pub), RINGBUS_ERR_NULL_POINTER,
                  "topic");
    EXPECT_STATUS(ringbus_publisher_open(client, "api.\xc3\x28", &config, &pub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_STATUS(ringbus_publisher_open(client, "bad name!", &config, &pub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "");
    EXPECT_STATUS(ringbus_publisher_open(client, "api.ow", &config, NULL),
                  RINGBUS_ERR_NULL_POINTER, "publisher");
    ringbus_topic_config bad = config;
    bad.mode = 7;
    EXPECT_STATUS(ringbus_publisher_open(client, "api.ow", &bad, &pub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "mode 7");
    bad = config;
    bad.capacity = 3;
    EXPECT_STATUS(ringbus_publisher_open(client, "api.ow", &bad, &pub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "capacity");
    EXPECT(pub == NULL);

    ringbus_subscribe_options options;
    OK(ringbus_subscribe_options_init(&options));
    EXPECT(options.start == RINGBUS_START_LATEST && options.wait == RINGBUS_WAIT_ADAPTIVE &&
           options.pattern == NULL && options.tag_mask == 0);
    options.start = RINGBUS_START_EARLIEST;
    ringbus_subscribe_options o = options;
    o.pattern = "api.*";
    EXPECT_STATUS(ringbus_subscriber_open(client, "api.ow", &o, &sub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "both topic and options.pattern");
    EXPECT_STATUS(ringbus_subscriber_open(client, NULL, &options, &sub), RINGBUS_ERR_NULL_POINTER,
                  "topic");
    o = options;
    o.tag_mask = 1;
    o.tag_value = 3;
    EXPECT_STATUS(ringbus_subscriber_open(client, "api.ow", &o, &sub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "outside options.tag_mask");
    o = options;
    o.reserved[0] = 1;
    EXPECT_STATUS(ringbus_subscriber_open(client, "api.ow", &o, &sub), RINGBUS_ERR_UNSUPPORTED,
                  "reserved");
    o = options;
    o.wait = 9;
    EXPECT_STATUS(ringbus_subscriber_open(client, "api.ow", &o, &sub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "wait 9");
    o = options;
    o.start = 5;
    EXPECT_STATUS(ringbus_subscriber_open(client, "api.ow", &o, &sub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "start 5");
    EXPECT(sub == NULL);

    OK(ringbus_subscriber_open(client, "api.ow", &options, &sub));
    ringbus_topic_config got;
    EXPECT_STATUS(ringbus_subscriber_config(sub, &got), RINGBUS_ERR_NOT_FOUND, "no config yet");
    EXPECT_STATUS(ringbus_publisher_open_existing(client, "api.ow", &pub), RINGBUS_ERR_NOT_FOUND,
                  "");
    OK(ringbus_publisher_open(client, "api.ow", &config, &pub));
    ringbus_topic_config other = config;
    other.capacity = 16;
    ringbus_publisher *pub2 = NULL;
    EXPECT_STATUS(ringbus_publisher_open(client, "api.ow", &other, &pub2),
                  RINGBUS_ERR_CONFIG_MISMATCH, "");
    OK(ringbus_publisher_config(pub, &got));
    EXPECT(memcmp(&got, &config, sizeof got) == 0);
    /* A second publisher joins with the topic's own config (on another
     * topic: its ring's end would show in this subscription). */
    ringbus_publisher *first = NULL;
    OK(ringbus_publisher_open(client, "api.existing", &config, &first));
    OK(ringbus_publisher_open_existing(client, "api.existing", &pub2));
    memset(&got, 0, sizeof got);
    OK(ringbus_publisher_config(pub2, &got));
    EXPECT(memcmp(&got, &config, sizeof got) == 0);
    OK(ringbus_publisher_close(pub2));
    OK(ringbus_publisher_close(first));
    pub2 = NULL;

    uint8_t buf[512];
    ringbus_message_info info;
    EXPECT_STATUS(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info), RINGBUS_ERR_EMPTY,
                  "no message");
    EXPECT_STATUS(ringbus_subscriber_recv(sub, buf, sizeof buf, 2 * MS, &info),
                  RINGBUS_ERR_TIMEOUT, "timed out");

    uint8_t msg[100];
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)(i * 3);
    uint64_t seq = 99;
    /* Timestamps are off by default (checked below): stamp these. */
    OK(ringbus_publisher_set_timestamps(pub, 1));
    uint64_t before = ringbus_now_ns();
    OK(ringbus_publisher_publish(pub, msg, sizeof msg, 0xfeedULL, &seq));
    EXPECT(seq == 0);
    EXPECT_STATUS(ringbus_publisher_publish(pub, NULL, 5, 0, NULL), RINGBUS_ERR_NULL_POINTER,
                  "data");
    EXPECT_STATUS(ringbus_publisher_publish(pub, buf, 257, 0, NULL), RINGBUS_ERR_TOO_LARGE,
                  "257");

    /* Too small: the needed size is reported and the message stays unread. */
    memset(&info, 0, sizeof info);
    EXPECT_STATUS(ringbus_subscriber_try_recv(sub, buf, 10, &info), RINGBUS_ERR_BUFFER_TOO_SMALL,
                  "100 bytes");
    EXPECT(info.len == 100);
    EXPECT_STATUS(ringbus_subscriber_try_recv(sub, NULL, 0, &info), RINGBUS_ERR_BUFFER_TOO_SMALL,
                  "100");
    EXPECT_STATUS(ringbus_subscriber_try_recv(sub, NULL, 10, &info), RINGBUS_ERR_NULL_POINTER,
                  "buf");
    EXPECT_STATUS(ringbus_subscriber_try_recv(sub, buf, sizeof buf, NULL),
                  RINGBUS_ERR_NULL_POINTER, "info");
    OK(ringbus_subscriber_recv(sub, buf, sizeof buf, 1000 * MS, &info));
    EXPECT(info.len == 100 && memcmp(buf, msg, 100) == 0);
    memset(&got, 0, sizeof got);
    OK(ringbus_subscriber_config(sub, &got));
    EXPECT(memcmp(&got, &config, sizeof got) == 0);
    EXPECT(info.sequence == 0 && info.tag == 0xfeedULL && info.missed == 0 &&
           info.topic == 0);
    /* Same clock as ringbus_now_ns() (publishers may read it through the
     * TSC, within microseconds of clock_gettime: allow 10 ms). */
    EXPECT(info.timestamp_ns + 10 * MS >= before && info.timestamp_ns <= ringbus_now_ns() + 10 * MS);

    /* Zero-copy needs back-pressure. */
    ringbus_message_view view;
    EXPECT_STATUS(ringbus_subscriber_recv_ref(sub, 0, &view), RINGBUS_ERR_ZERO_COPY_UNSUPPORTED,
                  "back-pressure");

    /* Loans. */
    void *slot = NULL;
    EXPECT_STATUS(ringbus_publisher_commit(pub, 0, 0, NULL), RINGBUS_ERR_BAD_STATE, "no loan");
    EXPECT_STATUS(ringbus_publisher_abandon(pub), RINGBUS_ERR_BAD_STATE, "no loan");
    EXPECT_STATUS(ringbus_publisher_loan(pub, 300, &slot), RINGBUS_ERR_TOO_LARGE, "300");
    EXPECT_STATUS(ringbus_publisher_loan(pub, 16, NULL), RINGBUS_ERR_NULL_POINTER, "buf");
    OK(ringbus_publisher_loan(pub, 16, &slot));
    EXPECT(slot != NULL);
    memcpy(slot, "zero-copy bytes!", 16);
    EXPECT_STATUS(ringbus_publisher_publish(pub, msg, 1, 0, NULL), RINGBUS_ERR_BAD_STATE,
                  "loan is outstanding");
    EXPECT_STATUS(ringbus_publisher_loan(pub, 16, &slot), RINGBUS_ERR_BAD_STATE, "outstanding");
    EXPECT_STATUS(ringbus_publisher_commit(pub, 17, 0, NULL), RINGBUS_ERR_INVALID_ARGUMENT,
                  "17 bytes");
    OK(ringbus_publisher_commit(pub, 9, 7, &seq));
    EXPECT(seq == 1);
    OK(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info));
    EXPECT(info.len == 9 && memcmp(buf, "zero-copy", 9) == 0 && info.tag == 7 &&
           info.sequence == 1);
    /* An abandoned loan publishes nothing. */
    OK(ringbus_publisher_try_loan(pub, 4, &slot));
    memcpy(slot, "lost", 4);
    OK(ringbus_publisher_abandon(pub));
    OK(ringbus_publisher_try_publish(pub, "kept", 4, 8, &seq));
    EXPECT(seq == 2);
    OK(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info));
    EXPECT(info.len == 4 && memcmp(buf, "kept", 4) == 0 && info.sequence == 2);
    EXPECT_STATUS(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info), RINGBUS_ERR_EMPTY,
                  "");

    /* Batches: in order, one tag; a bad entry publishes none of them. */
    ringbus_bytes three[3] = {{"one", 3}, {"two!", 4}, {NULL, 0}};
    OK(ringbus_publisher_publish_batch(pub, three, 3, 5, &seq));
    EXPECT(seq == 3);
    const char *want[3] = {"one", "two!", ""};
    for (int i = 0; i < 3; i++) {
        OK(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info));
        EXPECT(info.sequence == 3 + (uint64_t)i && info.tag == 5 &&
               info.len == strlen(want[i]) && memcmp(buf, want[i], info.len) == 0);
    }
    ringbus_bytes broken[2] = {{"fine", 4}, {NULL, 2}};
    EXPECT_STATUS(ringbus_publisher_publish_batch(pub, broken, 2, 0, NULL),
                  RINGBUS_ERR_NULL_POINTER, "msgs[1]");
    broken[1].data = buf;
    broken[1].len = 257;
    EXPECT_STATUS(ringbus_publisher_try_publish_batch(pub, broken, 2, 0, NULL, NULL),
                  RINGBUS_ERR_TOO_LARGE, "257");
    EXPECT_STATUS(ringbus_publisher_publish_batch(pub, NULL, 1, 0, NULL), RINGBUS_ERR_NULL_POINTER,
                  "msgs");
    size_t published = 9;
    OK(ringbus_publisher_try_publish_batch(pub, three, 2, 6, &published, &seq));
    EXPECT(published == 2 && seq == 6);
    for (int i = 0; i < 2; i++) {
        OK(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info));
        EXPECT(info.sequence == 6 + (uint64_t)i && info.tag == 6);
    }
    EXPECT_STATUS(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info), RINGBUS_ERR_EMPTY,
                  "");

    /* Received as a batch: each message to the callback, in order; a
       callback returning 0 ends the batch and leaves the rest unread. */
    OK(ringbus_publisher_publish_batch(pub, three, 3, 4, &seq));
    EXPECT(seq == 8);
    struct batch_seen seen = {0};
    size_t count = 0;
    OK(ringbus_subscriber_try_recv_batch(sub, buf, sizeof buf, 16, on_batch_message, &seen, &count,
                                         &info));
    EXPECT(count == 3 && seen.n == 3 && seen.seq[0] == 8 && seen.seq[2] == 10 && seen.len[1] == 4);
    EXPECT_STATUS(ringbus_subscriber_try_recv_batch(sub, buf, sizeof buf, 16, on_batch_message,
                                                    &seen, &count, &info),
                  RINGBUS_ERR_EMPTY, "");
    OK(ringbus_publisher_publish_batch(pub, three, 3, 4, &seq));
    seen = (struct batch_seen){.stop_after = 1};
    OK(ringbus_subscriber_try_recv_batch(sub, buf, sizeof buf, 16, on_batch_message, &seen, &count,
                                         NULL));
    EXPECT(count == 1 && seen.n == 1 && seen.seq[0] == 11);
    OK(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info));
    EXPECT(info.sequence == 12);
    OK(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info));
    EXPECT(info.sequence == 13);
    EXPECT_STATUS(ringbus_subscriber_try_recv_batch(sub, buf, sizeof buf, 16, NULL, NULL, NULL,
                                                    NULL),
                  RINGBUS_ERR_NULL_POINTER, "on_message");

    /* Timestamps off. */
    OK(ringbus_publisher_set_timestamps(pub, 0));
    OK(ringbus_publisher_publish(pub, NULL, 0, 9, NULL));
    OK(ringbus_subscriber_try_recv(sub, NULL, 0, &info));
    EXPECT(info.len == 0 && info.timestamp_ns == 0 && info.tag == 9);
    OK(ringbus_publisher_set_timestamps(pub, 1));

    /* Lapped in overwrite mode: 8 slots, 20 messages. */
    for (uint64_t i = 0; i < 20; i++) OK(ringbus_publisher_publish(pub, &i, sizeof i, i, NULL));
    uint64_t behind = 0;
    OK(ringbus_subscriber_backlog(sub, &behind));
    EXPECT(behind == 20); /* past the capacity: 12 of them are overwritten */
    EXPECT_STATUS(ringbus_subscriber_backlog(sub, NULL), RINGBUS_ERR_NULL_POINTER, "messages");
    EXPECT_STATUS(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info), RINGBUS_ERR_LAGGED,
                  "lagged");
    EXPECT(info.missed > 0);
    uint64_t lost = 0;
    OK(ringbus_subscriber_lagged_total(sub, &lost));
    EXPECT(lost == info.missed);
    uint64_t received = 0;
    while (ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info) == RINGBUS_OK) received++;
    EXPECT(received + lost == 20);
    OK(ringbus_subscriber_backlog(sub, &behind));
    EXPECT(behind == 0);

    /* End of stream once the publisher is gone and the ring drained. */
    OK(ringbus_publisher_publish(pub, "last", 4, 0, NULL));
    OK(ringbus_publisher_close(pub));
    OK(ringbus_subscriber_recv(sub, buf, sizeof buf, 1000 * MS, &info));
    EXPECT(info.len == 4 && memcmp(buf, "last", 4) == 0);
    EXPECT_STATUS(ringbus_subscriber_recv(sub, buf, sizeof buf, 1000 * MS, &info),
                  RINGBUS_ERR_END_OF_STREAM, "end of stream");

    /* Closed and foreign handles. */
    EXPECT_STATUS(ringbus_publisher_close(pub), RINGBUS_ERR_INVALID_HANDLE, "ringbus_publisher");
    EXPECT_STATUS(ringbus_publisher_publish(pub, "x", 1, 0, NULL), RINGBUS_ERR_INVALID_HANDLE,
                  "closed already");
    EXPECT_STATUS(ringbus_publisher_close(NULL), RINGBUS_ERR_NULL_POINTER, "NULL");
    EXPECT_STATUS(ringbus_publisher_publish((ringbus_publisher *)sub, "x", 1, 0, NULL),
                  RINGBUS_ERR_INVALID_HANDLE, "another kind");
    EXPECT_STATUS(ringbus_subscriber_close((ringbus_subscriber *)client),
                  RINGBUS_ERR_INVALID_HANDLE, "ringbus_subscriber");
    EXPECT_STATUS(ringbus_publisher_open((ringbus_client *)sub, "api.x", NULL, &pub2),
                  RINGBUS_ERR_INVALID_HANDLE, "ringbus_client");
    uint64_t fake[8] = {0x1234, 0, 0, 0, 0, 0, 0, 0};
    EXPECT_STATUS(ringbus_subscriber_try_recv((ringbus_subscriber *)fake, buf, 1, &info),
                  RINGBUS_ERR_INVALID_HANDLE, "");
    EXPECT_STATUS(ringbus_subscriber_try_recv((ringbus_subscriber *)((char *)fake + 1), buf, 1,
                                              &info),
                  RINGBUS_ERR_INVALID_HANDLE, "");
    OK(ringbus_subscriber_close(sub));
    EXPECT_STATUS(ringbus_subscriber_close(sub), RINGBUS_ERR_INVALID_HANDLE, "closed already");
}

/* Back-pressure: full rings, zero-copy receive and its state. */
static void test_backpressure_topic(ringbus_client *client) {
    ringbus_topic_config config;
    OK(ringbus_topic_config_init(&config));
    config.mode = RINGBUS_MODE_BACKPRESSURE;
    config.capacity = 4;
    config.max_message_size = 64;
    ringbus_subscribe_options options;
    OK(ringbus_subscribe_options_init(&options));
    options.wait = RINGBUS_WAIT_BLOCK;
    ringbus_subscriber *sub;
    ringbus_publisher *pub;
    OK(ringbus_subscriber_open(client, "api.bp", &options, &sub));
    OK(ringbus_publisher_open(client, "api.bp", &config, &pub));

    for (uint64_t i = 0; i < 4; i++) OK(ringbus_publisher_try_publish(pub, &i, sizeof i, i, NULL));
    uint64_t five = 5;
    EXPECT_STATUS(ringbus_publisher_try_publish(pub, &five, sizeof five, 5, NULL),
                  RINGBUS_ERR_FULL, "full");
    void *slot;
    EXPECT_STATUS(ringbus_publisher_try_loan(pub, 8, &slot), RINGBUS_ERR_FULL, "full");
    EXPECT_STATUS(ringbus_publisher_publish_timeout(pub, &five, sizeof five, 5, 2 * MS, NULL),
                  RINGBUS_ERR_TIMEOUT, "timeout");

    ringbus_message_view view;
    EXPECT_STATUS(ringbus_subscriber_recv_ref(sub, 0, NULL), RINGBUS_ERR_NULL_POINTER, "view");
    OK(ringbus_subscriber_recv_ref(sub, 1000 * MS, &view));
    uint64_t v;
    memcpy(&v, view.data, sizeof v);
    EXPECT(view.info.len == 8 && v == 0 && view.info.tag == 0 && view.info.sequence == 0);
    uint8_t buf[64];
    ringbus_message_info info;
    EXPECT_STATUS(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info), RINGBUS_ERR_BAD_STATE,
                  "release it first");
    EXPECT_STATUS(ringbus_subscriber_recv_ref(sub, 0, &view), RINGBUS_ERR_BAD_STATE, "held");
    /* The held slot keeps the ring full. */
    EXPECT_STATUS(ringbus_publisher_try_publish(pub, &five, sizeof five, 5, NULL),
                  RINGBUS_ERR_FULL, "");
    OK(ringbus_subscriber_release(sub));
    EXPECT_STATUS(ringbus_subscriber_release(sub), RINGBUS_ERR_BAD_STATE, "no zero-copy");
    OK(ringbus_publisher_try_publish(pub, &five, sizeof five, 5, NULL));

    /* Mixed copying and zero-copy receives read 1, 2, 3, 5 in order. */
    uint64_t expect[] = {1, 2, 3, 5};
    for (int i = 0; i < 4; i++) {
        if (i % 2) {
            OK(ringbus_subscriber_recv_ref(sub, 1000 * MS, &view));
            memcpy(&v, view.data, sizeof v);
            EXPECT(v == expect[i] && view.info.tag == expect[i]);
            OK(ringbus_subscriber_release(sub));
        } else {
            OK(ringbus_subscriber_recv(sub, buf, sizeof buf, 1000 * MS, &info));
            memcpy(&v, buf, sizeof v);
            EXPECT(v == expect[i] && info.tag == expect[i]);
        }
    }
    EXPECT_STATUS(ringbus_subscriber_recv_ref(sub, 0, &view), RINGBUS_ERR_EMPTY, "");
    EXPECT_STATUS(ringbus_subscriber_recv_ref(sub, 2 * MS, &view), RINGBUS_ERR_TIMEOUT, "");

    /* Closing with a loan or a held message outstanding is fine. */
    OK(ringbus_publisher_loan(pub, 8, &slot));
    OK(ringbus_publisher_close(pub));
    ringbus_publisher *pub2;
    OK(ringbus_publisher_open(client, "api.bp", &config, &pub2));
    OK(ringbus_publisher_publish(pub2, "held", 4, 0, NULL));
    int rc;
    do {
        rc = ringbus_subscriber_recv_ref(sub, 1000 * MS, &view);
    } while (rc == RINGBUS_ERR_END_OF_STREAM);
    OK(rc);
    EXPECT(view.info.len == 4 && memcmp(view.data, "held", 4) == 0);
    OK(ringbus_subscriber_close(sub));
    OK(ringbus_publisher_close(pub2));
}

/* Loans of many slots: all or nothing at the loan, per-slot lengths and
 * tags at the commit, the slots after `count` unpublished. */
static void test_loan_many(ringbus_client *client) {
    ringbus_topic_config config;
    OK(ringbus_topic_config_init(&config));
    config.mode = RINGBUS_MODE_BACKPRESSURE;
    config.capacity = 4;
    config.max_message_size = 16;
    ringbus_subscriber *sub;
    ringbus_publisher *pub;
    OK(ringbus_subscriber_open(client, "api.many", NULL, &sub));
    OK(ringbus_publisher_open(client, "api.many", &config, &pub));

    void *slots[4] = {NULL, NULL, NULL, NULL};
    uint64_t seq = 99;
    EXPECT_STATUS(ringbus_publisher_commit_many(pub, 0, NULL, NULL, NULL), RINGBUS_ERR_BAD_STATE,
                  "no loan");
    EXPECT_STATUS(ringbus_publisher_loan_many(pub, 5, 8, slots), RINGBUS_ERR_INVALID_ARGUMENT,
                  "capacity of 4");
    EXPECT_STATUS(ringbus_publisher_loan_many(pub, 2, 17, slots), RINGBUS_ERR_TOO_LARGE, "17");
    EXPECT_STATUS(ringbus_publisher_loan_many(pub, 2, 8, NULL), RINGBUS_ERR_NULL_POINTER, "bufs");
    OK(ringbus_publisher_loan_many(pub, 3, 8, slots));
    for (int i = 0; i < 3; i++) {
        EXPECT(slots[i] != NULL);
        memset(slots[i], 'a' + i, 8);
    }
    EXPECT_STATUS(ringbus_publisher_publish(pub, "x", 1, 0, NULL), RINGBUS_ERR_BAD_STATE,
                  "outstanding");
    EXPECT_STATUS(ringbus_publisher_commit(pub, 1, 0, NULL), RINGBUS_ERR_BAD_STATE, "of many");
    size_t too_long[2] = {8, 9};
    EXPECT_STATUS(ringbus_publisher_commit_many(pub, 2, too_long, NULL, NULL),
                  RINGBUS_ERR_INVALID_ARGUMENT, "lens[1]");
    EXPECT_STATUS(ringbus_publisher_commit_many(pub, 4, NULL, NULL, NULL),
                  RINGBUS_ERR_INVALID_ARGUMENT, "4 slots");
    /* Still outstanding after the refusals: two published, the third not. */
    size_t lens[2] = {8, 3};
    uint64_t tags[2] = {5, 6};
    OK(ringbus_publisher_commit_many(pub, 2, lens, tags, &seq));
    EXPECT(seq == 0);
    uint8_t buf[16];
    ringbus_message_info info;
    OK(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info));
    EXPECT(info.sequence == 0 && info.len == 8 && info.tag == 5 && memcmp(buf, "aaaaaaaa", 8) == 0);
    OK(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info));
    EXPECT(info.sequence == 1 && info.len == 3 && info.tag == 6 && memcmp(buf, "bbb", 3) == 0);
    EXPECT_STATUS(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info), RINGBUS_ERR_EMPTY, "");

    /* Whole slots, tag 0; then a ring too full for the next loan. */
    OK(ringbus_publisher_loan_many(pub, 4, 2, slots));
    for (int i = 0; i < 4; i++) memcpy(slots[i], "zz", 2);
    OK(ringbus_publisher_commit_many(pub, 4, NULL, NULL, &seq));
    EXPECT(seq == 2);
    EXPECT_STATUS(ringbus_publisher_try_loan_many(pub, 1, 2, slots), RINGBUS_ERR_FULL, "full");
    for (uint64_t i = 2; i < 6; i++) {
        OK(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info));
        EXPECT(info.sequence == i && info.len == 2 && info.tag == 0 && memcmp(buf, "zz", 2) == 0);
    }
    /* Abandoned: nothing published. A loan of none needs no slot array
     * and publishes nothing either. */
    OK(ringbus_publisher_try_loan_many(pub, 2, 2, slots));
    OK(ringbus_publisher_abandon(pub));
    OK(ringbus_publisher_loan_many(pub, 0, 2, NULL));
    OK(ringbus_publisher_commit_many(pub, 0, NULL, NULL, &seq));
    OK(ringbus_publisher_publish(pub, "k", 1, 0, &seq));
    EXPECT(seq == 6);
    OK(ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info));
    EXPECT(info.sequence == 6 && info.len == 1);
    OK(ringbus_subscriber_close(sub));
    OK(ringbus_publisher_close(pub));
}

/* Every message a subscriber does not get is reported, whichever way its
 * ring appears: the publisher opened before the subscriber, or after it
 * (the ring then appears later and is read from its first message). */
static void test_losses_are_reported(ringbus_client *client) {
    const char *topics[2] = {"api.loss.before", "api.loss.after"};
    for (int after = 0; after < 2; after++) {
        ringbus_topic_config config;
        OK(ringbus_topic_config_init(&config));
        config.capacity = 64;
        config.max_message_size = 64;
        ringbus_subscribe_options options;
        OK(ringbus_subscribe_options_init(&options));
        options.start = RINGBUS_START_EARLIEST;
        ringbus_publisher *pub = NULL;
        ringbus_subscriber *sub = NULL;
        if (!after) OK(ringbus_publisher_open(client, topics[after], &config, &pub));
        OK(ringbus_subscriber_open(client, topics[after], &options, &sub));
        if (after) OK(ringbus_publisher_open(client, topics[after], &config, &pub));
        for (uint64_t i = 0; i < 1000; i++)
            OK(ringbus_publisher_publish(pub, &i, sizeof i, i, NULL));
        uint8_t buf[64];
        ringbus_message_info info;
        uint64_t got = 0, missed = 0, next = 0;
        int rc;
        while ((rc = ringbus_subscriber_try_recv(sub, buf, sizeof buf, &info)) != RINGBUS_ERR_EMPTY) {
            if (rc == RINGBUS_ERR_LAGGED) {
                EXPECT(got == 0 && info.missed == 936);
                missed += info.missed;
                next += info.missed;
                continue;
            }
            OK(rc);
            uint64_t v;
            memcpy(&v, buf, sizeof v);
            EXPECT(v == next && info.sequence == next);
            next++;
            got++;
        }
        EXPECT(got == 64 && missed == 936);
        uint64_t total = 0;
        OK(ringbus_subscriber_lagged_total(sub, &total));
        EXPECT(total == 936);
        if (got != 64 || missed != 936)
            fprintf(stderr, "%s: got %llu messages, %llu reported missed\n", topics[after],
                    (unsigned long long)got, (unsigned long long)missed);
        OK(ringbus_subscriber_close(sub));
        OK(ringbus_publisher_close(pub));
    }
}

int main(void) {
    test_library();
    test_connect();
    ringbus_client *client;
    OK(ringbus_client_connect(NULL, &client));
    test_overwrite_topic(client);
    test_backpressure_topic(client);
    test_loan_many(client);
    test_losses_are_reported(client);
    OK(ringbus_client_close(client));
    if (failures) {
        fprintf(stderr, "api_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("api_test: all checks passed\n");
    return 0;
}
