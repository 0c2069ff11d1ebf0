/*
 * test_load_metrics.c - model servers' Prometheus metrics read as load signals: the value
 * parser, one realistic exposition per server family (several model series, HELP/TYPE,
 * histograms and look-alike names that must not count), the model filter, label escapes,
 * CRLF, NaN/Inf, huge and negative values, garbage and empty bodies, and the body cut at
 * every byte offset (copied to a buffer of exactly that size, so ASan sees any read past it;
 * the figures must be those of the complete lines before the cut).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "route/load_metrics.h"

#define LLAMA "meta-llama/Llama-3.1-8B-Instruct"
#define QWEN  "Qwen/Qwen3-32B"

static uint64_t value(const char *s, int want_rc)
{
    uint64_t micro = 12345;
    assert_int_equal(lx_load_value(s, strlen(s), &micro), want_rc);
    if (want_rc != LX_LOAD_VALUE_OK)
        assert_true(micro == 0);
    return micro;
}

static void test_value(void **state)
{
    (void)state;
    assert_true(value("0", LX_LOAD_VALUE_OK) == 0);
    assert_true(value("1", LX_LOAD_VALUE_OK) == 1000000);
    assert_true(value("3.0", LX_LOAD_VALUE_OK) == 3000000);
    assert_true(value("0.28", LX_LOAD_VALUE_OK) == 280000);
    assert_true(value("0.007507552643049313", LX_LOAD_VALUE_OK) == 7507);
    assert_true(value("8.128902e+06", LX_LOAD_VALUE_OK) == 8128902000000ull);
    assert_true(value("1E3", LX_LOAD_VALUE_OK) == 1000000000ull);
    assert_true(value("2.5e-1", LX_LOAD_VALUE_OK) == 250000);
    assert_true(value("1e-7", LX_LOAD_VALUE_OK) == 0);
    assert_true(value(".5", LX_LOAD_VALUE_OK) == 500000);
    assert_true(value("5.", LX_LOAD_VALUE_OK) == 5000000);
    assert_true(value("+2", LX_LOAD_VALUE_OK) == 2000000);
    assert_true(value("-1", LX_LOAD_VALUE_OK) == 0); /* negative: 0 */
    assert_true(value("-0.0", LX_LOAD_VALUE_OK) == 0);
    assert_true(value("00000000000000000000000000007", LX_LOAD_VALUE_OK) == 7000000);
    assert_true(value("0.000000000000000000000000001e30", LX_LOAD_VALUE_OK) == 1000000000ull);
    assert_true(value("12345678901234567890123", LX_LOAD_VALUE_OK) == LX_LOAD_VALUE_MAX);
    /* 19 significant digits are kept, the others truncated */
    assert_true(value("1844674407370.9551615", LX_LOAD_VALUE_OK) == 1844674407370955161ull);
    assert_true(value("18446744073709.551615", LX_LOAD_VALUE_OK) == 18446744073709551610ull);
    assert_true(value("18446744073709", LX_LOAD_VALUE_OK) == 18446744073709000000ull);
    assert_true(value("18446744073710", LX_LOAD_VALUE_OK) == LX_LOAD_VALUE_MAX);
    assert_true(value("1e400", LX_LOAD_VALUE_OK) == LX_LOAD_VALUE_MAX);
    assert_true(value("1e99999999999999999999", LX_LOAD_VALUE_OK) == LX_LOAD_VALUE_MAX);
    assert_true(value("1e-99999999999999999999", LX_LOAD_VALUE_OK) == 0);
    const char *nonfinite[] = {"NaN", "nan", "+Inf", "-Inf", "Inf", "inf", "Infinity", "-INF"};
    for (size_t i = 0; i < sizeof(nonfinite) / sizeof(nonfinite[0]); i++)
        value(nonfinite[i], LX_LOAD_VALUE_NONFINITE);
    const char *bad[] = {"",      ".",   "+",  "-",  "e5",   "1e",   "1e+",  "0x10", "1_000",
                         "1.2.3", "1,5", "3 ", " 3", "Infx", "NaNa", "1.0f", "++1",  "1e5.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        value(bad[i], LX_LOAD_VALUE_BAD);
}

/* vLLM v0.12 shape: two data-parallel engines of one model, one engine of another, a KV gauge
 * per series, and names that share a prefix with the gauges. */
static const char vllm_doc[] =
    "# HELP python_gc_objects_collected_total Objects collected during gc\n"
    "# TYPE python_gc_objects_collected_total counter\n"
    "python_gc_objects_collected_total{generation=\"0\"} 12345.0\n"
    "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
    "# TYPE vllm:num_requests_running gauge\n"
    "vllm:num_requests_running{engine=\"0\",model_name=\"" LLAMA "\"} 7.0\n"
    "vllm:num_requests_running{engine=\"1\",model_name=\"" LLAMA "\"} 5.0\n"
    "vllm:num_requests_running{engine=\"0\",model_name=\"" QWEN "\"} 2.0\n"
    "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
    "# TYPE vllm:num_requests_waiting gauge\n"
    "vllm:num_requests_waiting{engine=\"0\",model_name=\"" LLAMA "\"} 3.0\n"
    "vllm:num_requests_waiting{engine=\"1\",model_name=\"" LLAMA "\"} 1.0\n"
    "vllm:num_requests_waiting{engine=\"0\",model_name=\"" QWEN "\"} 11.0\n"
    "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
    "# TYPE vllm:kv_cache_usage_perc gauge\n"
    "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"" LLAMA "\"} 0.4375\n"
    "vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"" LLAMA "\"} 0.62109375\n"
    "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"" QWEN "\"} 0.9\n"
    "# HELP vllm:request_queue_time_seconds Histogram of time spent in WAITING phase.\n"
    "# TYPE vllm:request_queue_time_seconds histogram\n"
    "vllm:request_queue_time_seconds_bucket{engine=\"0\",le=\"0.3\",model_name=\"" LLAMA
    "\"} 40.0\n"
    "vllm:request_queue_time_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"" LLAMA
    "\"} 44.0\n"
    "vllm:request_queue_time_seconds_sum{engine=\"0\",model_name=\"" LLAMA "\"} 12.5\n"
    "vllm:request_queue_time_seconds_count{engine=\"0\",model_name=\"" LLAMA "\"} 44.0\n"
    "# look-alikes (synthetic): none of these is a gauge the parser reads\n"
    "# TYPE vllm:num_requests_waiting_foo histogram\n"
    "vllm:num_requests_waiting_foo_bucket{le=\"+Inf\",model_name=\"" LLAMA "\"} 1000.0\n"
    "vllm:num_requests_waiting_foo_sum{model_name=\"" LLAMA "\"} 999.0\n"
    "vllm:num_requests_waiting_foo_count{model_name=\"" LLAMA "\"} 1000.0\n"
    "vllm:num_requests_waiting_foo{model_name=\"" LLAMA "\"} 500.0\n"
    "vllm:num_requests_waitin{model_name=\"" LLAMA "\"} 500.0\n"
    "vllm:num_requests_running_total{model_name=\"" LLAMA "\"} 500.0\n"
    "vllm:kv_cache_usage_perc_max{model_name=\"" LLAMA "\"} 1.0\n"
    "xvllm:num_requests_waiting{model_name=\"" LLAMA "\"} 500.0\n"
    "vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"27536\"} 1.0\n"
    "vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"" LLAMA "\"} 1.2e+06\n";

static int parse(const char *doc, size_t len, const char *model, lx_load_sample_t *out)
{
    return lx_load_metrics_parse(doc, len, model, model != NULL ? strlen(model) : 0, out);
}

static void test_vllm(void **state)
{
    (void)state;
    lx_load_sample_t s;
    assert_int_equal(parse(vllm_doc, sizeof(vllm_doc) - 1, NULL, &s), LX_LOAD_OK);
    assert_int_equal(s.family, LX_LOAD_FAMILY_VLLM);
    assert_int_equal(s.flags, LX_LOAD_HAS_WAITING | LX_LOAD_HAS_RUNNING | LX_LOAD_HAS_KV);
    assert_int_equal(s.waiting, 15); /* 3 + 1 + 11 */
    assert_int_equal(s.running, 14); /* 7 + 5 + 2 */
    assert_int_equal(s.kv_ppm, 900000);
    assert_int_equal(s.samples, 24);
    assert_int_equal(s.skipped, 0);

    assert_int_equal(parse(vllm_doc, sizeof(vllm_doc) - 1, LLAMA, &s), LX_LOAD_OK);
    assert_int_equal(s.flags, LX_LOAD_HAS_WAITING | LX_LOAD_HAS_RUNNING | LX_LOAD_HAS_KV);
    assert_int_equal(s.waiting, 4);
    assert_int_equal(s.running, 12);
    assert_int_equal(s.kv_ppm, 621093); /* the fuller engine, truncated */

    assert_int_equal(parse(vllm_doc, sizeof(vllm_doc) - 1, QWEN, &s), LX_LOAD_OK);
    assert_int_equal(s.waiting, 11);
    assert_int_equal(s.running, 2);
    assert_int_equal(s.kv_ppm, 900000);

    /* a model the server does not serve: nothing present, and the miss said */
    assert_int_equal(parse(vllm_doc, sizeof(vllm_doc) - 1, "Qwen/Qwen3", &s), LX_LOAD_OK);
    assert_int_equal(s.family, LX_LOAD_FAMILY_VLLM);
    assert_int_equal(s.flags, LX_LOAD_MODEL_MISS);
    assert_int_equal(s.waiting + s.running + s.kv_ppm, 0);
    /* an empty model name is no filter */
    assert_int_equal(lx_load_metrics_parse(vllm_doc, sizeof(vllm_doc) - 1, "x", 0, &s), LX_LOAD_OK);
    assert_int_equal(s.waiting, 15);
}

/* Before 0.12 vLLM named the KV gauge gpu_cache_usage_perc; from 0.9.2 to 0.11 both exist,
 * and the new one is read. */
static void test_vllm_kv_names(void **state)
{
    (void)state;
    static const char old[] =
        "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.\n"
        "# TYPE vllm:gpu_cache_usage_perc gauge\n"
        "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.25\n"
        "vllm:num_requests_swapped{model_name=\"m\"} 4.0\n"
        "vllm:num_requests_waiting{model_name=\"m\"} 2.0\n";
    static const char both[] = "vllm:gpu_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.25\n"
                               "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.5\n"
                               "vllm:gpu_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.75\n";
    lx_load_sample_t s;
    assert_int_equal(parse(old, sizeof(old) - 1, "m", &s), LX_LOAD_OK);
    assert_int_equal(s.flags, LX_LOAD_HAS_WAITING | LX_LOAD_HAS_KV);
    assert_int_equal(s.kv_ppm, 250000);
    assert_int_equal(s.waiting, 2);
    assert_int_equal(parse(both, sizeof(both) - 1, "m", &s), LX_LOAD_OK);
    assert_int_equal(s.flags, LX_LOAD_HAS_KV);
    assert_int_equal(s.kv_ppm, 500000);
    /* a server that has the new name has it for every model: the old one is not a fallback */
    static const char other[] = "vllm:kv_cache_usage_perc{model_name=\"a\"} 0.1\n"
                                "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.9\n";
    assert_int_equal(parse(other, sizeof(other) - 1, "m", &s), LX_LOAD_OK);
    assert_int_equal(s.flags, LX_LOAD_MODEL_MISS);
    assert_int_equal(parse(other, sizeof(other) - 1, NULL, &s), LX_LOAD_OK);
    assert_int_equal(s.kv_ppm, 100000);
}

static void test_sglang(void **state)
{
    (void)state;
    static const char doc[] =
        "# HELP sglang:num_running_reqs The number of running requests.\n"
        "# TYPE sglang:num_running_reqs gauge\n"
        "sglang:num_running_reqs{engine_type=\"unified\",model_name=\"" QWEN
        "\",pp_rank=\"0\",tp_rank=\"0\",dp_rank=\"0\"} 31.0\n"
        "sglang:num_running_reqs{engine_type=\"unified\",model_name=\"" QWEN
        "\",pp_rank=\"0\",tp_rank=\"0\",dp_rank=\"1\"} 29.0\n"
        "# HELP sglang:num_queue_reqs The number of requests in the waiting queue.\n"
        "# TYPE sglang:num_queue_reqs gauge\n"
        "sglang:num_queue_reqs{engine_type=\"unified\",model_name=\"" QWEN
        "\",pp_rank=\"0\",tp_rank=\"0\",dp_rank=\"0\"} 6.0\n"
        "sglang:num_queue_reqs{engine_type=\"unified\",model_name=\"" QWEN
        "\",pp_rank=\"0\",tp_rank=\"0\",dp_rank=\"1\"} 0.0\n"
        "sglang:num_grammar_queue_reqs{model_name=\"" QWEN "\"} 9.0\n"
        "# HELP sglang:token_usage The token usage.\n"
        "# TYPE sglang:token_usage gauge\n"
        "sglang:token_usage{model_name=\"" QWEN "\",dp_rank=\"0\"} 0.28\n"
        "sglang:token_usage{model_name=\"" QWEN "\",dp_rank=\"1\"} 0.31\n"
        "sglang:swa_token_usage{model_name=\"" QWEN "\"} 0.99\n"
        "sglang:cache_hit_rate{model_name=\"" QWEN "\"} 0.007507552643049313\n"
        "# TYPE sglang:time_to_first_token_seconds histogram\n"
        "sglang:time_to_first_token_seconds_sum{model_name=\"" QWEN "\"} 2.3518979474117756e+06\n"
        "sglang:time_to_first_token_seconds_bucket{le=\"0.001\",model_name=\"" QWEN "\"} 0.0\n"
        "sglang:time_to_first_token_seconds_count{model_name=\"" QWEN "\"} 541.0\n";
    lx_load_sample_t s;
    assert_int_equal(parse(doc, sizeof(doc) - 1, QWEN, &s), LX_LOAD_OK);
    assert_int_equal(s.family, LX_LOAD_FAMILY_SGLANG);
    assert_int_equal(s.flags, LX_LOAD_HAS_WAITING | LX_LOAD_HAS_RUNNING | LX_LOAD_HAS_KV);
    assert_int_equal(s.running, 60);
    assert_int_equal(s.waiting, 6);
    assert_int_equal(s.kv_ppm, 310000);
    assert_int_equal(parse(doc, sizeof(doc) - 1, LLAMA, &s), LX_LOAD_OK);
    assert_int_equal(s.flags, LX_LOAD_MODEL_MISS);

    /* 2024 releases labelled the model `name` */
    static const char old[] = "# TYPE sglang:num_running_reqs gauge\n"
                              "sglang:num_running_reqs{name=\"google/gemma-2-9b-it\"} 3.0\n"
                              "sglang:num_queue_reqs{name=\"google/gemma-2-9b-it\"} 1.0\n"
                              "sglang:token_usage{name=\"google/gemma-2-9b-it\"} 0.05\n";
    assert_int_equal(parse(old, sizeof(old) - 1, "google/gemma-2-9b-it", &s), LX_LOAD_OK);
    assert_int_equal(s.flags, LX_LOAD_HAS_WAITING | LX_LOAD_HAS_RUNNING | LX_LOAD_HAS_KV);
    assert_int_equal(s.running, 3);
    assert_int_equal(parse(old, sizeof(old) - 1, "gemma", &s), LX_LOAD_OK);
    assert_int_equal(s.flags, LX_LOAD_MODEL_MISS);
}

/* TGI: no model label, no KV gauge; the batch size is what runs. */
static void test_tgi(void **state)
{
    (void)state;
    static const char doc[] = "# TYPE tgi_request_count counter\n"
                              "tgi_request_count 1234\n"
                              "# TYPE tgi_batch_current_max_tokens gauge\n"
                              "tgi_batch_current_max_tokens 16000\n"
                              "# TYPE tgi_batch_current_size gauge\n"
                              "tgi_batch_current_size 4\n"
                              "# TYPE tgi_queue_size gauge\n"
                              "tgi_queue_size 7\n"
                              "# TYPE tgi_batch_next_size histogram\n"
                              "tgi_batch_next_size_bucket{le=\"1\"} 5\n"
                              "tgi_batch_next_size_sum 80\n"
                              "tgi_batch_next_size_count 20\n"
                              "tgi_request_queue_duration_bucket{le=\"0.5\"} 9\n";
    lx_load_sample_t s;
    assert_int_equal(parse(doc, sizeof(doc) - 1, LLAMA, &s), LX_LOAD_OK);
    assert_int_equal(s.family, LX_LOAD_FAMILY_TGI);
    assert_int_equal(s.flags, LX_LOAD_HAS_WAITING | LX_LOAD_HAS_RUNNING); /* no KV, no miss */
    assert_int_equal(s.waiting, 7);
    assert_int_equal(s.running, 4);
    assert_int_equal(s.kv_ppm, 0);
    assert_string_equal(lx_load_family_name(s.family), "tgi");
}

static void test_llamacpp(void **state)
{
    (void)state;
    /* current builds: no KV gauge */
    static const char now[] =
        "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n"
        "# TYPE llamacpp:prompt_tokens_total counter\n"
        "llamacpp:prompt_tokens_total 6886\n"
        "# HELP llamacpp:n_busy_slots_per_decode Average number of busy slots per decode.\n"
        "# TYPE llamacpp:n_busy_slots_per_decode gauge\n"
        "llamacpp:n_busy_slots_per_decode 1.5\n"
        "# HELP llamacpp:requests_processing Number of requests processing.\n"
        "# TYPE llamacpp:requests_processing gauge\n"
        "llamacpp:requests_processing 2\n"
        "# HELP llamacpp:requests_deferred Number of requests deferred.\n"
        "# TYPE llamacpp:requests_deferred gauge\n"
        "llamacpp:requests_deferred 3\n";
    /* builds before May 2025 (ggml-org/llama.cpp#13660) */
    static const char before[] = "llamacpp:kv_cache_usage_ratio 0.63\n"
                                 "llamacpp:kv_cache_tokens 1234\n"
                                 "llamacpp:requests_processing 1\n"
                                 "llamacpp:requests_deferred 0\n";
    lx_load_sample_t s;
    assert_int_equal(parse(now, sizeof(now) - 1, "any", &s), LX_LOAD_OK);
    assert_int_equal(s.family, LX_LOAD_FAMILY_LLAMACPP);
    assert_int_equal(s.flags, LX_LOAD_HAS_WAITING | LX_LOAD_HAS_RUNNING);
    assert_int_equal(s.running, 2);
    assert_int_equal(s.waiting, 3);
    assert_int_equal(parse(before, sizeof(before) - 1, NULL, &s), LX_LOAD_OK);
    assert_int_equal(s.flags, LX_LOAD_HAS_WAITING | LX_LOAD_HAS_RUNNING | LX_LOAD_HAS_KV);
    assert_int_equal(s.kv_ppm, 630000);
    assert_int_equal(s.running, 1);
    assert_int_equal(s.waiting, 0);
}

/* Label values with escaped quotes, backslashes and newlines are decoded before the model is
 * compared; a bad escape makes its line malformed, alone. */
static void test_escapes(void **state)
{
    (void)state;
    static const char doc[] =
        "vllm:num_requests_waiting{model_name=\"a\\\"b\\\\c\\nd\",engine=\"0\"} 5\n"
        "vllm:num_requests_waiting{engine=\"}\\\"{,\",model_name=\"a\\\"b\\\\c\\nd\"} 6\n"
        "vllm:num_requests_waiting{model_name=\"a\\\"b\\\\c\\\\nd\"} 100\n"
        "vllm:num_requests_waiting{model_name=\"a\\tb\"} 1000\n"
        "vllm:num_requests_running{model_name=\"a\\\"b\\\\c\\nd\"} 1\n";
    const char model[] = "a\"b\\c\nd";
    lx_load_sample_t s;
    assert_int_equal(parse(doc, sizeof(doc) - 1, model, &s), LX_LOAD_OK);
    assert_int_equal(s.waiting, 11);
    assert_int_equal(s.running, 1);
    assert_int_equal(s.samples, 4);
    assert_int_equal(s.skipped, 1); /* \t is no escape of the format */
    assert_int_equal(parse(doc, sizeof(doc) - 1, "a\"b\\c\\nd", &s), LX_LOAD_OK);
    assert_int_equal(s.waiting, 100);
    assert_int_equal(s.flags, LX_LOAD_HAS_WAITING | LX_LOAD_MODEL_MISS);
    assert_int_equal(parse(doc, sizeof(doc) - 1, NULL, &s), LX_LOAD_OK);
    assert_int_equal(s.waiting, 111);
}

/* Blanks where the format allows them, a trailing comma, timestamps, exemplars; malformed
 * lines skipped one by one. */
static void test_layout(void **state)
{
    (void)state;
    static const char doc[] =
        "\n"
        "   # TYPE vllm:num_requests_running gauge\n"
        "vllm:num_requests_running{ model_name = \"m\" , engine=\"0\", } 4 1712345678000\n"
        "\tvllm:num_requests_running {model_name=\"m\"}\t1\t-5 \n"
        "vllm:num_requests_running{model_name=\"m\"}2 # {trace_id=\"x\"} 1 1.5\n"
        "vllm:num_requests_running{} 8\n"
        "vllm:num_requests_running 16\n"
        "vllm:num_requests_running{model_name=\"m\" 32\n"
        "vllm:num_requests_running{model_name=m} 64\n"
        "vllm:num_requests_running{model_name=\"m\"} abc\n"
        "vllm:num_requests_running{model_name=\"m\"}\n"
        "vllm:num_requests_running128\n"
        "vllm:num_requests_running{model_name=\"m\",,} 256\n"
        "vllm:num_requests_running{1x=\"m\"} 512\n"
        "vllm:num_requests_running{model_name=\"m\"} 0x400\n"
        "vllm:num_requests_running{model_name=\"m\"} 1024 \r\n"
        "#\n"
        "# HELP\n";
    lx_load_sample_t s;
    assert_int_equal(parse(doc, sizeof(doc) - 1, "m", &s), LX_LOAD_OK);
    assert_int_equal(s.running, 4 + 1 + 2 + 8 + 16 + 1024);
    assert_int_equal(s.samples, 6);
    assert_int_equal(s.skipped, 8);
}

static char *crlf(const char *doc, size_t len, size_t *out_len)
{
    char *o = malloc(2 * len);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (doc[i] == '\n')
            o[n++] = '\r';
        o[n++] = doc[i];
    }
    *out_len = n;
    return o;
}

static void test_crlf(void **state)
{
    (void)state;
    size_t n;
    char *doc = crlf(vllm_doc, sizeof(vllm_doc) - 1, &n);
    lx_load_sample_t a, b;
    assert_int_equal(parse(vllm_doc, sizeof(vllm_doc) - 1, LLAMA, &a), LX_LOAD_OK);
    assert_int_equal(parse(doc, n, LLAMA, &b), LX_LOAD_OK);
    assert_int_equal(a.waiting, b.waiting);
    assert_int_equal(a.running, b.running);
    assert_int_equal(a.kv_ppm, b.kv_ppm);
    assert_int_equal(a.flags, b.flags);
    assert_int_equal(a.family, b.family);
    assert_int_equal(a.samples, b.samples);
    assert_int_equal(b.waiting, 4);
    assert_int_equal(b.skipped, 0);
    free(doc);
}

/* NaN and Inf make a series absent; huge values saturate; negative ones count as 0. */
static void test_odd_values(void **state)
{
    (void)state;
    static const char doc[] = "sglang:num_queue_reqs{model_name=\"m\"} NaN\n"
                              "sglang:num_running_reqs{model_name=\"m\"} +Inf\n"
                              "sglang:num_running_reqs{model_name=\"m\"} 2\n"
                              "sglang:token_usage{model_name=\"m\"} -Inf\n";
    lx_load_sample_t s;
    assert_int_equal(parse(doc, sizeof(doc) - 1, "m", &s), LX_LOAD_OK);
    assert_int_equal(s.flags, LX_LOAD_HAS_RUNNING);
    assert_int_equal(s.running, 2);
    assert_int_equal(s.samples, 4);

    static const char big[] = "tgi_queue_size 1e30\n"
                              "tgi_queue_size 1e30\n"
                              "tgi_batch_current_size -3\n";
    assert_int_equal(parse(big, sizeof(big) - 1, NULL, &s), LX_LOAD_OK);
    assert_int_equal(s.flags, LX_LOAD_HAS_WAITING | LX_LOAD_HAS_RUNNING);
    assert_true(s.waiting == UINT32_MAX);
    assert_int_equal(s.running, 0);

    static const char kv[] = "vllm:kv_cache_usage_perc 5\n"
                             "vllm:num_requests_waiting 4294967295.9\n"
                             "vllm:num_requests_waiting 0.5\n"
                             "vllm:num_requests_running 2.5\n"
                             "vllm:num_requests_running 2.5\n";
    assert_int_equal(parse(kv, sizeof(kv) - 1, NULL, &s), LX_LOAD_OK);
    assert_int_equal(s.kv_ppm, 1000000);
    assert_true(s.waiting == UINT32_MAX);
    assert_int_equal(s.running, 5); /* summed, then floored */
}

/* The first family seen is the document's: another family's gauges do not add up with it. */
static void test_one_family(void **state)
{
    (void)state;
    static const char doc[] = "process_cpu_seconds_total 3.5\n"
                              "vllm:num_requests_waiting{model_name=\"m\"} 1\n"
                              "sglang:num_queue_reqs{model_name=\"m\"} 50\n"
                              "tgi_queue_size 70\n"
                              "vllm:num_requests_waiting{model_name=\"m\"} 2\n";
    lx_load_sample_t s;
    assert_int_equal(parse(doc, sizeof(doc) - 1, "m", &s), LX_LOAD_OK);
    assert_int_equal(s.family, LX_LOAD_FAMILY_VLLM);
    assert_int_equal(s.waiting, 3);
    /* a malformed line does not set the family */
    static const char bad_first[] = "sglang:num_queue_reqs{model_name=\"m\" 50\n"
                                    "tgi_queue_size 70\n";
    assert_int_equal(parse(bad_first, sizeof(bad_first) - 1, "m", &s), LX_LOAD_OK);
    assert_int_equal(s.family, LX_LOAD_FAMILY_TGI);
    assert_int_equal(s.waiting, 70);
}

static void test_not_prometheus(void **state)
{
    (void)state;
    lx_load_sample_t s;
    memset(&s, 0xff, sizeof(s));
    assert_int_equal(lx_load_metrics_parse(NULL, 0, NULL, 0, &s), LX_LOAD_EMPTY);
    assert_int_equal(s.flags, 0);
    assert_int_equal(s.family, LX_LOAD_FAMILY_NONE);
    assert_int_equal(parse("", 0, NULL, &s), LX_LOAD_EMPTY);
    assert_int_equal(parse("\n \r\n\t\n", 6, NULL, &s), LX_LOAD_EMPTY);
    /* no line end at all: a cut body */
    assert_int_equal(parse("vllm:num_requests_waiting 3", 27, NULL, &s), LX_LOAD_EMPTY);
    assert_int_equal(s.flags, 0);
    static const char html[] = "<!DOCTYPE html>\n<html><body>Not Found</body></html>\n";
    assert_int_equal(parse(html, sizeof(html) - 1, NULL, &s), LX_LOAD_NOT_PROMETHEUS);
    assert_int_equal(s.skipped, 2);
    static const char json[] = "{\"error\":\"metrics disabled\"}\n";
    assert_int_equal(parse(json, sizeof(json) - 1, NULL, &s), LX_LOAD_NOT_PROMETHEUS);
    assert_int_equal(parse("# just a comment\n", 17, NULL, &s), LX_LOAD_NOT_PROMETHEUS);
    assert_int_equal(parse("# TYPE tgi_queue_size gauge\n", 28, NULL, &s), LX_LOAD_OK);
    assert_int_equal(s.flags, 0);
    assert_int_equal(s.family, LX_LOAD_FAMILY_NONE);
    static const char nul[] = "tgi_queue_size 1\0\n";
    assert_int_equal(parse(nul, sizeof(nul) - 1, NULL, &s), LX_LOAD_NOT_PROMETHEUS);
    assert_string_equal(lx_load_family_name(99), "none");
}

/* One document as lines with what each adds; a line counts once its LF is in the body. */
typedef struct oline {
    const char *text;
    int sig; /* 0 waiting, 1 running, 2 KV, -1 none */
    uint32_t v;
    const char *model;
} oline_t;

static const oline_t cut_doc[] = {
    {"# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n", -1, 0, NULL},
    {"# TYPE vllm:num_requests_waiting gauge\n", -1, 0, NULL},
    {"vllm:num_requests_waiting{engine=\"0\",model_name=\"m\\\"1\"} 12\n", 0, 12, "m\"1"},
    {"vllm:num_requests_waiting{engine=\"1\",model_name=\"m\\\"1\"} 340 1712345678\r\n", 0, 340,
     "m\"1"},
    {"vllm:num_requests_waiting{engine=\"0\",model_name=\"other\"} 5000\n", 0, 5000, "other"},
    {"vllm:num_requests_waiting_sum{model_name=\"m\\\"1\"} 99999\n", -1, 0, NULL},
    {"vllm:num_requests_running{model_name=\"m\\\"1\"} 1.5e1\n", 1, 15, "m\"1"},
    {"vllm:num_requests_running{model_name=\"m\\\"1\"} 7\n", 1, 7, "m\"1"},
    {"vllm:kv_cache_usage_perc{model_name=\"m\\\"1\"} 0.125\n", 2, 125000, "m\"1"},
    {"vllm:kv_cache_usage_perc{model_name=\"m\\\"1\"} 0.5\n", 2, 500000, "m\"1"},
    {"vllm:kv_cache_usage_perc{model_name=\"other\"} 0.75\n", 2, 750000, "other"},
};
#define CUT_LINES (sizeof(cut_doc) / sizeof(cut_doc[0]))

static void expect_cut(size_t cut, const size_t *ends, const char *model, const lx_load_sample_t *s)
{
    uint32_t want[3] = {0, 0, 0};
    unsigned flags = 0;
    for (size_t i = 0; i < CUT_LINES; i++) {
        const oline_t *l = &cut_doc[i];
        if (ends[i] > cut || l->sig < 0 || (model != NULL && strcmp(model, l->model) != 0))
            continue;
        flags |= 1u << l->sig;
        if (l->sig == 2)
            want[2] = l->v > want[2] ? l->v : want[2];
        else
            want[l->sig] += l->v;
    }
    assert_int_equal(s->flags & ~LX_LOAD_MODEL_MISS, flags);
    assert_int_equal(s->waiting, want[0]);
    assert_int_equal(s->running, want[1]);
    assert_int_equal(s->kv_ppm, want[2]);
}

static void test_every_cut(void **state)
{
    (void)state;
    char doc[2048];
    size_t ends[CUT_LINES], len = 0;
    for (size_t i = 0; i < CUT_LINES; i++) {
        size_t n = strlen(cut_doc[i].text);
        memcpy(doc + len, cut_doc[i].text, n);
        len += n;
        ends[i] = len; /* the line counts from this length on */
    }
    const char *models[] = {NULL, "m\"1", "other"};
    for (size_t cut = 0; cut <= len; cut++) {
        char *copy = malloc(cut > 0 ? cut : 1); /* exactly <cut> bytes: ASan sees over-reads */
        memcpy(copy, doc, cut);
        for (size_t m = 0; m < 3; m++) {
            lx_load_sample_t s;
            int rc = parse(copy, cut, models[m], &s);
            assert_int_equal(rc, cut < ends[0] ? LX_LOAD_EMPTY : LX_LOAD_OK);
            expect_cut(cut, ends, models[m], &s);
        }
        free(copy);
    }
    lx_load_sample_t s;
    assert_int_equal(parse(doc, len, "m\"1", &s), LX_LOAD_OK);
    assert_int_equal(s.waiting, 352);
    assert_int_equal(s.running, 22);
    assert_int_equal(s.kv_ppm, 500000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value),         cmocka_unit_test(test_vllm),
        cmocka_unit_test(test_vllm_kv_names), cmocka_unit_test(test_sglang),
        cmocka_unit_test(test_tgi),           cmocka_unit_test(test_llamacpp),
        cmocka_unit_test(test_escapes),       cmocka_unit_test(test_layout),
        cmocka_unit_test(test_crlf),          cmocka_unit_test(test_odd_values),
        cmocka_unit_test(test_one_family),    cmocka_unit_test(test_not_prometheus),
        cmocka_unit_test(test_every_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
