/*
 * tollgate command line: run, check, graph, keys, version (DESIGN §5).
 * Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
 */
#include <ares.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "auth/keystore.h"
#include "config/config.h"
#include "core/core.h"
#include "core/hex.h"
#include "core/sha256.h"
#include "proxy/control.h"

static const char usage[] =
    "usage: tollgate [run] -c FILE     start the gateway\n"
    "       tollgate check -c FILE     validate a configuration; errors as FILE:LINE:COL: message\n"
    "       tollgate graph -c FILE     print a Mermaid flowchart of the configuration\n"
    "       tollgate keys hash KEY     print the digest to put in a configuration or key store\n"
    "       tollgate keys new          print a new random API key and its digest\n"
    "       tollgate version           print versions\n"
    "       tollgate --help            this text\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.\n";

static struct tg_config *tg__load(const char *path)
{
    struct tg_config_errors errs = {0};
    struct tg_config *cf = tg_config_load(path, &errs);

    for (size_t i = 0; i < errs.num; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    if (cf == NULL && errs.num == 0)
        fprintf(stderr, "%s: cannot load configuration\n", path);
    tg_config_errors_dispose(&errs);
    return cf;
}

static int tg__check(const char *path)
{
    struct tg_config *cf = tg__load(path);

    if (cf == NULL)
        return 2;
    printf("%s: ok (%zu listener%s, %zu service%s, %zu route%s)\n", path, cf->num_listens,
           cf->num_listens == 1 ? "" : "s", cf->num_services, cf->num_services == 1 ? "" : "s",
           cf->num_routes, cf->num_routes == 1 ? "" : "s");
    tg_config_drop(cf);
    return 0;
}

static int tg__graph(const char *path)
{
    struct tg_config *cf = tg__load(path);

    if (cf == NULL)
        return 2;
    tg_config_graph(cf, stdout);
    tg_config_drop(cf);
    return 0;
}

/* keys hash KEY | keys new: digests are what configurations and key stores hold. */
static int tg__keys(int argc, char **argv)
{
    uint8_t d[32], raw[24];
    char hex[64];
    char key[64];

    if (argc == 4 && strcmp(argv[2], "hash") == 0) {
        tg_sha256(argv[3], strlen(argv[3]), d);
    } else if (argc == 3 && strcmp(argv[2], "new") == 0) {
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            fprintf(stderr, "tollgate: no random bytes\n");
            return 1;
        }
        /* "tg_" + 32 base64url characters: 192 random bits */
        memcpy(key, "tg_", 3);
        EVP_EncodeBlock((unsigned char *)key + 3, raw, sizeof(raw));
        for (char *p = key + 3; *p; p++)
            *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
        tg_sha256(key, strlen(key), d);
        printf("key:    %s\n", key);
    } else {
        fprintf(stderr, "usage: tollgate keys hash KEY | tollgate keys new\n");
        return 2;
    }
    tg_hex_bytes(hex, d, sizeof(d));
    printf("%ssha256:%.64s\n", argc == 3 ? "digest: " : "", hex);
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = "run", *file = NULL;
    int i = 1;

    if (argc > 1 && strcmp(argv[1], "keys") == 0)
        return tg__keys(argc, argv);
    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        i = 2;
    }
    for (; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            file = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "tollgate: unexpected argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    if (strcmp(cmd, "version") == 0) {
        printf("tollgate %s (%s, c-ares %s, libyaml %s)\n", TG_VERSION,
               OpenSSL_version(OPENSSL_VERSION), ares_version(NULL), yaml_get_version_string());
        return 0;
    }
    if (strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0 && strcmp(cmd, "graph") != 0) {
        fprintf(stderr, "tollgate: unknown command '%s'\n%s", cmd, usage);
        return 2;
    }
    if (file == NULL) {
        fprintf(stderr, "tollgate: %s needs -c FILE\n%s", cmd, usage);
        return 2;
    }
    if (strcmp(cmd, "check") == 0)
        return tg__check(file);
    if (strcmp(cmd, "graph") == 0)
        return tg__graph(file);
    return tg_control_run(file, TG_VERSION);
}
