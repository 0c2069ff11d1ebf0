/*
 * keys_cli.h - `llmux keys create|list|show|update|disable|delete`: key management from the
 * command line, on the same store file the gateway uses (for the operator without an HTTP
 * client). The running gateway sees the change at its next poll of the file (store.h).
 */
#ifndef LX_KEYS_CLI_H
#define LX_KEYS_CLI_H

#include <stdio.h>

/*
 * Runs one `llmux keys` command on the store at <store_path>: argv[0] is the subcommand, the
 * rest its arguments (main.c has consumed `-c CONFIG` and `keys`):
 *   create --name N [--limit USD] [--limit-reset daily|weekly|monthly|none]
 *          [--expires-at ISO-8601-UTC] [--models a,b] [--rpm N] [--tpm N] [--concurrency N]
 *          [--provider JSON] [--priority interactive|batch] [--disabled]
 *   list [--all]
 *   show HASH
 *   update HASH [the flags of create but --expires-at] [--no-limit] [--enable]
 *   disable HASH
 *   delete HASH
 * --models is a comma-separated allowlist whose entries may hold '*'; --limit-reset none is
 * null. Flags take their value as the next argument or after '=' (--limit=5). Values are checked by
 * the management API's reader (key_json.h), so the rules and messages are the API's.
 * Prints the management API's JSON on <out> (create: the plaintext key alone on the first
 * line, shown this once, then the key's JSON); errors on <err>. Changes are audited with the
 * actor "cli". Returns the exit status: 0, 1 (the store failed, no such key), 2 (usage: an
 * unknown command or flag, a missing or invalid value).
 */
int lx_keys_cli_main(const char *store_path, int argc, char **argv, FILE *out, FILE *err);

#endif
