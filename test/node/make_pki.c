/*
 * make_pki.c - writes the test PKI of test/unit/tls/pki.h (generated now, with mbedTLS's own
 * x509write API) into a directory, for tests that need certificate files outside a C test
 * binary: the OpenAI Node SDK over TLS (test/node/sdk_tls.test.mjs) trusts <dir>/ca.pem through
 * NODE_EXTRA_CA_CERTS and points llmux at <dir>/server.pem and <dir>/server.key.
 *
 * Usage: llmux-test-pki <existing directory>. Files: ca, server (localhost, 127.0.0.1),
 * expired, wronghost, other_ca, other, sni, client; each <name>.pem and <name>.key.
 * Exit status 0, or 1 with a message on stderr.
 */
#include <stdio.h>

#include "../unit/tls/pki.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 1;
    }
    pki_t p;
    int rc = pki_make(&p, argv[1]);
    pki_dispose(&p);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot write the test PKI into %s (%d)\n", argv[0], argv[1], rc);
        return 1;
    }
    return 0;
}
