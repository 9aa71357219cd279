/* Pattern subscriptions and filters through the C API, against a live
 * broker ($RINGBUS_SOCKET): topics a pattern matches before and after it
 * is made, told apart by info.topic and ringbus_subscriber_topic_name();
 * bad patterns; tag mask, tag set and a C predicate (with its user
 * pointer) over 10 000 messages, checked against a reference filter;
 * filtered counts; the error paths of the new calls. Exits 0 when every
 * check passes; prints each failure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringbus.h"

#include "check.h"

static const int64_t MS = 1000 * 1000;

static ringbus_topic_config config_of(uint32_t mode, uint32_t capacity) {
    ringbus_topic_config c;
    OK(ringbus_topic_config_init(&c));
    c.mode = mode;
    c.capacity = capacity;
    c.max_message_size = 16;
    return c;
}

/* Receives `n` messages of a pattern subscription; counts them per topic
 * name ("pf.a" in [0], "pf.b.c" in [1]) and checks that each topic's
 * sequence numbers and payloads run 0, 1, 2... */
static void receive_by_name(ringbus_subscriber *sub, int n, uint64_t counts[2],
                            uint32_t ids[2]) {
    for (int i = 0; i < n; i++) {
        uint64_t v = 0;
        ringbus_message_info info;
        int rc = ringbus_subscriber_recv(sub, &v, sizeof v, 5000 * MS, &info);
        OK(rc);
        if (rc != RINGBUS_OK) return;
        char name[RINGBUS_TOPIC_NAME_CAPACITY];
        size_t len = 0;
        OK(ringbus_subscriber_topic_name(sub, info.topic, name, sizeof name, &len));
        EXPECT(len == strlen(name));
        int k = strcmp(name, "pf.a") == 0 ? 0 : strcmp(name, "pf.b.c") == 0 ? 1 : -1;
        EXPECT(k >= 0);
        if (k < 0) {
            fprintf(stderr, "message from unexpected topic \"%s\"\n", name);
            continue;
        }
        EXPECT(info.sequence == counts[k] && v == counts[k] && info.len == sizeof v);
        EXPECT(info.tag == (uint64_t)k);
        ids[k] = info.topic;
        counts[k]++;
    }
}

/* A pattern takes the topics that exist when it is made and those
 * created later, and only those it matches. */
static void test_pattern(ringbus_client *client) {
    ringbus_topic_config bp = config_of(RINGBUS_MODE_BACKPRESSURE, 64);
    ringbus_publisher *before = NULL, *after = NULL, *other = NULL, *shallow = NULL;
    OK(ringbus_publisher_open(client, "pf.a", &bp, &before));
    OK(ringbus_publisher_open(client, "pfx.a", &bp, &other));
    for (uint64_t i = 0; i < 5; i++) OK(ringbus_publisher_publish(before, &i, sizeof i, 0, NULL));

    ringbus_subscribe_options options;
    OK(ringbus_subscribe_options_init(&options));
    options.start = RINGBUS_START_EARLIEST;
    ringbus_subscriber *sub = NULL, *one_level = NULL;
    OK(ringbus_subscriber_open(client, "pf.>", &options, &sub));
    /* The same, given in options.pattern; `*` is one segment only. */
    ringbus_subscribe_options o = options;
    o.pattern = "pf.*";
    OK(ringbus_subscriber_open(client, NULL, &o, &one_level));

    /* Created after subscribing: one level deeper, and one not matched. */
    OK(ringbus_publisher_open(client, "pf.b.c", &bp, &after));
    OK(ringbus_publisher_open(client, "pf", &bp, &shallow));
    uint64_t x = 99;
    OK(ringbus_publisher_publish(other, &x, sizeof x, 9, NULL));
    OK(ringbus_publisher_publish(shallow, &x, sizeof x, 9, NULL));
    for (uint64_t i = 0; i < 5; i++) OK(ringbus_publisher_publish(after, &i, sizeof i, 1, NULL));
    for (uint64_t i = 5; i < 10; i++) OK(ringbus_publisher_publish(before, &i, sizeof i, 0, NULL));

    uint64_t counts[2] = {0, 0};
    uint32_t ids[2] = {0, 0};
    receive_by_name(sub, 15, counts, ids);
    EXPECT(counts[0] == 10 && counts[1] == 5);
    EXPECT(ids[0] != ids[1]);
    uint64_t v;
    ringbus_message_info info;
    EXPECT_STATUS(ringbus_subscriber_recv(sub, &v, sizeof v, 20 * MS, &info), RINGBUS_ERR_TIMEOUT,
                  "");

    uint64_t one_counts[2] = {0, 0};
    uint32_t one_ids[2] = {0, 0};
    receive_by_name(one_level, 10, one_counts, one_ids);
    EXPECT(one_counts[0] == 10 && one_counts[1] == 0);
    EXPECT_STATUS(ringbus_subscriber_recv(one_level, &v, sizeof v, 20 * MS, &info),
                  RINGBUS_ERR_TIMEOUT, "");

    /* topic_name's contract. */
    char name[RINGBUS_TOPIC_NAME_CAPACITY];
    size_t len = 0;
    EXPECT_STATUS(ringbus_subscriber_topic_name(sub, ids[1], name, 6, &len),
                  RINGBUS_ERR_BUFFER_TOO_SMALL, "7 bytes");
    EXPECT(len == 6);
    EXPECT_STATUS(ringbus_subscriber_topic_name(sub, ids[1], NULL, 0, &len),
                  RINGBUS_ERR_BUFFER_TOO_SMALL, "");
    OK(ringbus_subscriber_topic_name(sub, ids[1], name, 7, &len));
    EXPECT(len == 6 && strcmp(name, "pf.b.c") == 0);
    EXPECT_STATUS(ringbus_subscriber_topic_name(sub, 1000, name, sizeof name, &len),
                  RINGBUS_ERR_NOT_FOUND, "no topic 1000");
    EXPECT_STATUS(ringbus_subscriber_topic_name(sub, ids[0], name, sizeof name, NULL),
                  RINGBUS_ERR_NULL_POINTER, "len");
    EXPECT_STATUS(ringbus_subscriber_topic_name(sub, ids[0], NULL, 10, &len),
                  RINGBUS_ERR_NULL_POINTER, "buf");
    EXPECT_STATUS(ringbus_subscriber_topic_name(NULL, 0, name, sizeof name, &len),
                  RINGBUS_ERR_NULL_POINTER, "ringbus_subscriber");

    /* An error that fills info names the topic too (the message stays). */
    OK(ringbus_publisher_publish(after, &x, sizeof x, 1, NULL));
    memset(&info, 0, sizeof info);
    EXPECT_STATUS(ringbus_subscriber_recv(sub, &v, 1, 5000 * MS, &info),
                  RINGBUS_ERR_BUFFER_TOO_SMALL, "");
    EXPECT(info.len == sizeof x && info.topic == ids[1]);

    /* Zero-copy on a pattern: the view says which topic too. */
    ringbus_message_view view;
    OK(ringbus_subscriber_recv_ref(sub, 5000 * MS, &view));
    EXPECT(view.info.topic == ids[1] && view.info.len == sizeof x);
    EXPECT_STATUS(ringbus_subscriber_topic_name(sub, ids[1], name, sizeof name, &len),
                  RINGBUS_ERR_BAD_STATE, "release");
    OK(ringbus_subscriber_release(sub));

    OK(ringbus_subscriber_close(one_level));
    OK(ringbus_subscriber_close(sub));
    OK(ringbus_publisher_close(before));
    OK(ringbus_publisher_close(after));
    OK(ringbus_publisher_close(other));
    OK(ringbus_publisher_close(shallow));
}

static void test_bad_patterns(ringbus_client *client) {
    ringbus_subscriber *sub = NULL;
    EXPECT_STATUS(ringbus_subscriber_open(client, "md..>", NULL, &sub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "byte 3");
    EXPECT_STATUS(ringbus_subscriber_open(client, "a>", NULL, &sub), RINGBUS_ERR_INVALID_ARGUMENT,
                  "inside a segment");
    EXPECT_STATUS(ringbus_subscriber_open(client, "md.a*", NULL, &sub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "inside a segment");
    ringbus_subscribe_options o;
    OK(ringbus_subscribe_options_init(&o));
    o.pattern = ">.x";
    EXPECT_STATUS(ringbus_subscriber_open(client, NULL, &o, &sub), RINGBUS_ERR_INVALID_ARGUMENT,
                  "'>' at byte 0");
    o.pattern = "md.\xff.>";
    EXPECT_STATUS(ringbus_subscriber_open(client, NULL, &o, &sub), RINGBUS_ERR_INVALID_ARGUMENT,
                  "options.pattern is not valid UTF-8");
    EXPECT(sub == NULL);
}

/* The tag of message i: 8 well-mixed bits. */
static uint64_t tag_of(uint64_t i) { return (i * 0x9E3779B97F4A7C15ULL) >> 56; }

enum { N = 10000 };

static const uint64_t TAG_SET[10] = {3, 17, 42, 77, 100, 128, 150, 200, 231, 255};

static int in_set(uint64_t tag) {
    for (size_t i = 0; i < sizeof TAG_SET / sizeof TAG_SET[0]; i++)
        if (TAG_SET[i] == tag) return 1;
    return 0;
}

/* What a C predicate is given through `user`. */
struct pred_state {
    uint64_t modulus;
    uint64_t calls;
    uint64_t bad_calls;
};

/* Keeps the messages whose payload (their index) is a multiple of
 * `modulus`; checks what it is given. */
static int keep_multiples(const ringbus_message_info *info, const uint8_t *data, size_t len,
                          void *user) {
    struct pred_state *st = user;
    st->calls++;
    uint64_t v;
    if (info == NULL || data == NULL || len != sizeof v || info->len != len ||
        info->ring_id != 0 || info->topic != 0) {
        st->bad_calls++;
        return 0;
    }
    memcpy(&v, data, sizeof v);
    if (v != info->sequence || info->tag != tag_of(v)) st->bad_calls++;
    return v % st->modulus == 0;
}

/* Which filter a subscriber got (its reference in C). */
enum kind { MASK_AT_OPEN, MASK, SET, PREDICATE, MASK_AND_PREDICATE, MASK_AND_SET };

static int reference(enum kind k, uint64_t i) {
    uint64_t t = tag_of(i);
    switch (k) {
    case MASK_AT_OPEN: return (t & 0xF0) == 0x30;
    case MASK: return (t & 0x03) == 0x01;
    case SET: return in_set(t);
    case PREDICATE: return i % 7 == 0;
    case MASK_AND_PREDICATE: return (t & 0x01) == 0x01 && i % 3 == 0;
    case MASK_AND_SET: return (t & 0x01) == 0x01 && in_set(t);
    }
    return 0;
}

/* Drains `sub` (every message is published already) and checks that it
 * got exactly the messages `k` keeps, in order. */
static void check_filtered(ringbus_subscriber *sub, enum kind k) {
    uint64_t next = 0, delivered = 0, mismatches = 0;
    for (;;) {
        uint64_t v;
        ringbus_message_info info;
        int rc = ringbus_subscriber_try_recv(sub, &v, sizeof v, &info);
        if (rc == RINGBUS_ERR_EMPTY) break;
        OK(rc);
        if (rc != RINGBUS_OK) break;
        while (next < N && !reference(k, next)) next++;
        if (v != next || info.sequence != next || info.tag != tag_of(next)) mismatches++;
        next = v + 1;
        delivered++;
    }
    while (next < N && !reference(k, next)) next++;
    EXPECT(next == N);
    uint64_t want = 0;
    for (uint64_t i = 0; i < N; i++) want += (uint64_t)reference(k, i);
    uint64_t filtered = 0;
    OK(ringbus_subscriber_filtered_total(sub, &filtered));
    EXPECT(mismatches == 0 && delivered == want && filtered == N - want);
    EXPECT(want > 0 && want < N);
    if (mismatches || delivered != want || filtered != N - want)
        fprintf(stderr, "filter %d: %llu delivered (%llu wanted), %llu filtered, %llu wrong\n",
                (int)k, (unsigned long long)delivered, (unsigned long long)want,
                (unsigned long long)filtered, (unsigned long long)mismatches);
}

static void test_filters(ringbus_client *client) {
    ringbus_topic_config c = config_of(RINGBUS_MODE_OVERWRITE, 16384);
    ringbus_publisher *pub = NULL;
    OK(ringbus_publisher_open(client, "pf.tags", &c, &pub));
    ringbus_subscribe_options options;
    OK(ringbus_subscribe_options_init(&options));
    options.start = RINGBUS_START_EARLIEST;

    ringbus_subscriber *subs[6] = {0};
    ringbus_subscribe_options o = options;
    o.tag_mask = 0xF0;
    o.tag_value = 0x30;
    OK(ringbus_subscriber_open(client, "pf.tags", &o, &subs[MASK_AT_OPEN]));
    for (int k = MASK; k <= MASK_AND_SET; k++)
        OK(ringbus_subscriber_open(client, "pf.tags", &options, &subs[k]));
    OK(ringbus_subscriber_filter_tags(subs[MASK], 0x03, 0x01));
    OK(ringbus_subscriber_filter_tag_set(subs[SET], TAG_SET, 10));
    struct pred_state sevens = {7, 0, 0}, threes = {3, 0, 0};
    OK(ringbus_subscriber_filter(subs[PREDICATE], keep_multiples, &sevens));
    OK(ringbus_subscriber_filter_tags(subs[MASK_AND_PREDICATE], 0x01, 0x01));
    OK(ringbus_subscriber_filter(subs[MASK_AND_PREDICATE], keep_multiples, &threes));
    OK(ringbus_subscriber_filter_tags(subs[MASK_AND_SET], 0x01, 0x01));
    OK(ringbus_subscriber_filter_tag_set(subs[MASK_AND_SET], TAG_SET, 10));

    for (uint64_t i = 0; i < N; i++)
        OK(ringbus_publisher_publish(pub, &i, sizeof i, tag_of(i), NULL));
    for (int k = MASK_AT_OPEN; k <= MASK_AND_SET; k++) check_filtered(subs[k], (enum kind)k);

    /* The predicate saw every message once; behind a tag filter, only the
     * messages the filter kept. */
    EXPECT(sevens.calls == N && sevens.bad_calls == 0);
    uint64_t odd = 0;
    for (uint64_t i = 0; i < N; i++) odd += tag_of(i) & 1;
    EXPECT(threes.calls == odd && threes.bad_calls == 0);

    /* Error paths: nothing changes. */
    ringbus_subscriber *s = subs[MASK];
    EXPECT_STATUS(ringbus_subscriber_filter_tags(s, 0x01, 0x02), RINGBUS_ERR_INVALID_ARGUMENT,
                  "outside mask");
    uint64_t many[65] = {0};
    EXPECT_STATUS(ringbus_subscriber_filter_tag_set(s, many, 65), RINGBUS_ERR_INVALID_ARGUMENT,
                  "at most 64");
    EXPECT_STATUS(ringbus_subscriber_filter_tag_set(s, NULL, (size_t)-1),
                  RINGBUS_ERR_INVALID_ARGUMENT, "at most 64");
    EXPECT_STATUS(ringbus_subscriber_filter_tag_set(s, NULL, 3), RINGBUS_ERR_NULL_POINTER, "tags");
    EXPECT_STATUS(ringbus_subscriber_filter(s, NULL, NULL), RINGBUS_ERR_NULL_POINTER,
                  "ringbus_subscriber_clear_filters");
    EXPECT_STATUS(ringbus_subscriber_filtered_total(s, NULL), RINGBUS_ERR_NULL_POINTER,
                  "filtered");
    EXPECT_STATUS(ringbus_subscriber_filter_tags(NULL, 0, 0), RINGBUS_ERR_NULL_POINTER, "");
    EXPECT_STATUS(ringbus_subscriber_clear_filters((ringbus_subscriber *)client),
                  RINGBUS_ERR_INVALID_HANDLE, "ringbus_subscriber");
    /* 64 tags are fine; an empty set drops the condition. */
    OK(ringbus_subscriber_filter_tag_set(subs[SET], many, 64));
    OK(ringbus_subscriber_filter_tag_set(subs[SET], NULL, 0));

    /* Cleared: everything again; the counts stay. */
    for (int k = MASK_AT_OPEN; k <= MASK_AND_SET; k++) OK(ringbus_subscriber_clear_filters(subs[k]));
    for (uint64_t i = N; i < N + 10; i++)
        OK(ringbus_publisher_publish(pub, &i, sizeof i, tag_of(i), NULL));
    for (int k = MASK_AT_OPEN; k <= MASK_AND_SET; k++) {
        uint64_t got = 0, v;
        ringbus_message_info info;
        while (ringbus_subscriber_try_recv(subs[k], &v, sizeof v, &info) == RINGBUS_OK) {
            EXPECT(v == N + got);
            got++;
        }
        EXPECT(got == 10);
        uint64_t filtered = 0, want = 0;
        OK(ringbus_subscriber_filtered_total(subs[k], &filtered));
        for (uint64_t i = 0; i < N; i++) want += (uint64_t)!reference((enum kind)k, i);
        EXPECT(filtered == want);
    }
    EXPECT(sevens.calls == N);
    for (int k = MASK_AT_OPEN; k <= MASK_AND_SET; k++) OK(ringbus_subscriber_close(subs[k]));
    OK(ringbus_publisher_close(pub));
}

/* Back-pressure: filtered messages do not hold the publisher back, and a
 * zero-copy receive skips them too. */
static void test_backpressure_filter(ringbus_client *client) {
    ringbus_topic_config c = config_of(RINGBUS_MODE_BACKPRESSURE, 4);
    ringbus_subscribe_options options;
    OK(ringbus_subscribe_options_init(&options));
    options.tag_mask = 0xFF;
    options.tag_value = 2;
    ringbus_subscriber *sub = NULL;
    ringbus_publisher *pub = NULL;
    OK(ringbus_subscriber_open(client, "pf.bp", &options, &sub));
    OK(ringbus_publisher_open(client, "pf.bp", &c, &pub));
    for (uint64_t i = 0; i < 4; i++) OK(ringbus_publisher_try_publish(pub, &i, sizeof i, i, NULL));
    uint64_t more = 4;
    EXPECT_STATUS(ringbus_publisher_try_publish(pub, &more, sizeof more, 4, NULL),
                  RINGBUS_ERR_FULL, "");
    ringbus_message_view view;
    OK(ringbus_subscriber_recv_ref(sub, 5000 * MS, &view));
    uint64_t v;
    memcpy(&v, view.data, sizeof v);
    EXPECT(v == 2 && view.info.tag == 2 && view.info.topic == 0);
    OK(ringbus_subscriber_release(sub));
    EXPECT_STATUS(ringbus_subscriber_recv_ref(sub, 0, &view), RINGBUS_ERR_EMPTY, "");
    /* Message 3 was passed over: the whole ring is free again. */
    for (uint64_t i = 4; i < 8; i++) OK(ringbus_publisher_try_publish(pub, &i, sizeof i, i, NULL));
    uint64_t filtered = 0;
    OK(ringbus_subscriber_filtered_total(sub, &filtered));
    EXPECT(filtered == 3);
    OK(ringbus_subscriber_close(sub));
    OK(ringbus_publisher_close(pub));
}

int main(void) {
    ringbus_client *client;
    OK(ringbus_client_connect(NULL, &client));
    test_pattern(client);
    test_bad_patterns(client);
    test_filters(client);
    test_backpressure_filter(client);
    OK(ringbus_client_close(client));
    if (failures) {
        fprintf(stderr, "pattern_filter_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("pattern_filter_test: all checks passed\n");
    return 0;
}
