/*
 * fuzz_config.c - libFuzzer target for the configuration parser (YAML text -> lx_config_t).
 *
 * Feeds the bytes to lx_config_parse() as a file named "fuzz.yaml"; error lines go to
 * /dev/null, a snapshot that parses is summarised (to /dev/null), checked and released, so any leak
 * on an error path, or a read past a value, shows up under the sanitizers. The corpus in
 * corpus/config/ is replayed by CTest in every build.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    lx_config_t *cfg = NULL;

    if (sink == NULL)
        sink = fopen("/dev/null", "w");
    if (lx_config_parse("fuzz.yaml", (const char *)data, size, sink, &cfg) == 0) {
        if (sink != NULL)
            lx_config_dump(cfg, sink);
        /* Invariant: every model of a valid snapshot is found by its id. */
        for (size_t i = 0; i < cfg->n_models; i++) {
            const char *id = cfg->models[i].id;
            if (lx_config_find_model(cfg, id, strlen(id)) != &cfg->models[i])
                __builtin_trap();
        }
        lx_config_unref(cfg);
    }
    return 0;
}
