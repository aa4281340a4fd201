/*
 * SHA-256 (sha256.h).
 */
#include "core/sha256.h"

#include <pthread.h>

#include <openssl/evp.h>

#include "core/core.h"

/*
 * The digest is set up once: the algorithm is fetched
 * from the provider once per process (EVP_sha256() would look it up on every init), and each
 * thread reuses one context. The pthread key exists only to free that context when its thread
 * exits; the fast path reads the _Thread_local pointer.
 */
static pthread_once_t tg__sha_once = PTHREAD_ONCE_INIT;
static EVP_MD *tg__sha_md;
static pthread_key_t tg__sha_key;
static _Thread_local EVP_MD_CTX *tg__sha_ctx;

static void tg__sha_ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
    tg__sha_ctx = NULL; /* a later destructor of this thread may still hash */
}

static void tg__sha_init_once(void)
{
    tg__sha_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (tg__sha_md == NULL)
        tg_fatal("OpenSSL provides no SHA-256");
    if (pthread_key_create(&tg__sha_key, tg__sha_ctx_free) != 0)
        tg_fatal("cannot create the SHA-256 thread key");
}

static EVP_MD_CTX *tg__sha_ctx_get(void)
{
    EVP_MD_CTX *ctx = tg__sha_ctx;

    if (TG_LIKELY(ctx != NULL))
        return ctx; /* this thread ran the once-init before it made ctx */
    pthread_once(&tg__sha_once, tg__sha_init_once);
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        tg_fatal("out of memory for a SHA-256 context");
    pthread_setspecific(tg__sha_key, ctx);
    tg__sha_ctx = ctx;
    return ctx;
}

void tg_sha256_pair(const void *a, size_t an, const void *b, size_t bn, uint8_t out[32])
{
    EVP_MD_CTX *ctx = tg__sha_ctx_get();
    unsigned int n = 0;

    if (!EVP_DigestInit_ex2(ctx, tg__sha_md, NULL) || !EVP_DigestUpdate(ctx, a, an) ||
        (bn > 0 && !EVP_DigestUpdate(ctx, b, bn)) || !EVP_DigestFinal_ex(ctx, out, &n) || n != 32)
        tg_fatal("SHA-256 failed");
}

void tg_sha256(const void *p, size_t n, uint8_t out[32])
{
    tg_sha256_pair(p, n, NULL, 0, out);
}
