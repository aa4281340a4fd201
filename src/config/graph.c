/*
 * `tollgate graph`: the configuration drawn as a Mermaid flowchart of who calls whom,
 * listeners -> routes -> services -> nodes. Node ids are generated (L0, R0, S0, S0N0) so they
 * are valid Mermaid ids whatever the names are; names only ever appear inside quoted labels.
 */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "http/h1.h"

/* Writes s as the inside of a quoted Mermaid label: quotes and the characters Mermaid reads as
 * markup become entity codes, control characters are dropped. */
static void label_text(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"')
            fputs("#quot;", out);
        else if (c == '#')
            fputs("#35;", out);
        else if (c == '<')
            fputs("#lt;", out);
        else if (c == '>')
            fputs("#gt;", out);
        else if (c >= 0x20 && c != 0x7f)
            fputc(c, out);
    }
}

static const char *const method_names[TG_METHOD__COUNT] = {
    [TG_METHOD_GET] = "GET",     [TG_METHOD_HEAD] = "HEAD",     [TG_METHOD_POST] = "POST",
    [TG_METHOD_PUT] = "PUT",     [TG_METHOD_DELETE] = "DELETE", [TG_METHOD_OPTIONS] = "OPTIONS",
    [TG_METHOD_PATCH] = "PATCH", [TG_METHOD_TRACE] = "TRACE",   [TG_METHOD_CONNECT] = "CONNECT",
};

static void route_label(FILE *out, const struct tg_route_conf *r)
{
    fputs("route ", out);
    label_text(out, r->name);
    if (r->host != NULL) {
        fputs("<br/>host ", out);
        label_text(out, r->host);
    }
    if (r->path != NULL) {
        fputs("<br/>path ", out);
        label_text(out, r->path);
    }
    if (r->methods != 0) {
        const char *sep = " ";

        fputs("<br/>methods", out);
        for (int m = 1; m < TG_METHOD__COUNT; m++) {
            if (r->methods & (1u << m)) {
                fprintf(out, "%s%s", sep, method_names[m]);
                sep = ",";
            }
        }
    }
    if (r->rewrite_host != NULL) {
        fputs("<br/>rewrite host ", out);
        label_text(out, r->rewrite_host);
    }
    if (r->rewrite_path != NULL) {
        fputs("<br/>rewrite path ", out);
        label_text(out, r->rewrite_path);
    }
}

static void service_label(FILE *out, const struct tg_service_conf *s)
{
    static const char *const kinds[] = {"http", "jsonrpc"};
    static const char *const balancers[] = {"p2c_ewma", "round_robin", "least_outstanding",
                                            "consistent_hash"};

    fputs("service ", out);
    label_text(out, s->name);
    fprintf(out, "<br/>%s, %s", kinds[s->kind], balancers[s->balance]);
}

/* Node URLs often carry an API key from ${VAR} in their path, and a graph is made to be shared:
 * only the scheme and authority are drawn, and a base path shows as "/...". */
static void node_label(FILE *out, const struct tg_node_conf *n)
{
    if (n->scheme == TG_SCHEME_UNIX) {
        label_text(out, n->url);
    } else {
        fputs(n->scheme == TG_SCHEME_HTTPS ? "https://" : "http://", out);
        label_text(out, n->authority);
        if (n->base_path[0] != '\0')
            fputs("/...", out);
    }
    if (n->weight != 1)
        fprintf(out, "<br/>weight %u", n->weight);
}

void tg_config_graph(const struct tg_config *cf, FILE *out)
{
    fputs("flowchart LR\n", out);
    for (size_t i = 0; i < cf->num_listens; i++) {
        const struct tg_listen_conf *l = &cf->listens[i];

        fprintf(out, "    L%zu[\"listen ", i);
        label_text(out, l->addr_text);
        fprintf(out, "%s\"]\n", l->tls_cert != NULL ? " (TLS)" : "");
    }
    fputs("    A[\"admin ", out);
    label_text(out, cf->admin_addr_text);
    fputs("\"]\n", out);
    for (size_t i = 0; i < cf->num_routes; i++) {
        fprintf(out, "    R%zu[\"", i);
        route_label(out, &cf->routes[i]);
        fputs("\"]\n", out);
    }
    for (size_t i = 0; i < cf->num_services; i++) {
        const struct tg_service_conf *s = &cf->services[i];

        fprintf(out, "    S%zu[\"", i);
        service_label(out, s);
        fputs("\"]\n", out);
        for (size_t j = 0; j < s->num_nodes; j++) {
            fprintf(out, "    S%zuN%zu[\"", i, j);
            node_label(out, &s->nodes[j]);
            fputs("\"]\n", out);
        }
    }
    /* Every listener serves every route: routing does not depend on the listener. */
    for (size_t i = 0; i < cf->num_listens; i++)
        for (size_t r = 0; r < cf->num_routes; r++)
            fprintf(out, "    L%zu --> R%zu\n", i, r);
    for (size_t r = 0; r < cf->num_routes; r++) {
        const struct tg_route_conf *rt = &cf->routes[r];

        if (rt->svc != NULL)
            fprintf(out, "    R%zu --> S%zu\n", r, (size_t)(rt->svc - cf->services));
    }
    for (size_t i = 0; i < cf->num_services; i++) {
        const struct tg_service_conf *s = &cf->services[i];

        for (size_t j = 0; j < s->num_nodes; j++) {
            /* Fallback tiers are drawn dotted: they carry traffic only when tier 0 cannot. */
            if (s->nodes[j].tier != 0)
                fprintf(out, "    S%zu -.->|\"tier %u\"| S%zuN%zu\n", i, s->nodes[j].tier, i, j);
            else
                fprintf(out, "    S%zu --> S%zuN%zu\n", i, i, j);
        }
    }
}
