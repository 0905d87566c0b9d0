/* kernel_without.c: pretend the running kernel lacks some BPF features.
 *
 * Loaded with LD_PRELOAD (see scripts/kernel-without), it interposes libc's
 * syscall(), through which fastbpf's extension modules issue bpf(2), and
 * fails chosen bpf commands the way an older or locked-down kernel would.
 * The features come from $KERNEL_WITHOUT, a list separated by commas:
 *
 *   map=N[:E]     BPF_MAP_CREATE with map_type N
 *   prog=N[:E]    BPF_PROG_LOAD with prog_type N
 *   attach=N[:E]  BPF_LINK_CREATE or BPF_PROG_ATTACH with attach_type N
 *   cmd=N[:E]     bpf command N, whatever its attributes
 *
 * E is the errno to fail with (EINVAL, 22, when left out). With
 * $KERNEL_WITHOUT_LOG set, each refusal is appended to that file.
 * Only calls made through syscall() are seen; a raw syscall instruction or
 * a static binary is not affected. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

enum what { W_MAP, W_PROG, W_ATTACH, W_CMD };

struct refusal {
    enum what what;
    uint32_t number;
    int err;
};

#define CAPACITY 256
static struct refusal table[CAPACITY];
static int table_len;
static int table_ready;

static const struct { const char *name; enum what what; } kinds[] = {
    {"map", W_MAP}, {"prog", W_PROG}, {"attach", W_ATTACH}, {"cmd", W_CMD},
};

/* One "kind=N[:E]" item; malformed items are reported once and ignored. */
static void add_item(const char *item, size_t len) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return;
    memcpy(buf, item, len);
    buf[len] = 0;
    char *eq = strchr(buf, '=');
    if (!eq) goto bad;
    *eq = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        if (strcmp(buf, kinds[k].name)) continue;
        char *end;
        unsigned long n = strtoul(eq + 1, &end, 0);
        int err = EINVAL;
        if (*end == ':') err = (int)strtol(end + 1, &end, 0);
        if (*end || end == eq + 1 || err <= 0 || table_len == CAPACITY) goto bad;
        table[table_len++] = (struct refusal){kinds[k].what, (uint32_t)n, err};
        return;
    }
bad:
    fprintf(stderr, "kernel_without: ignoring bad item '%.*s'\n", (int)len, item);
}

static void load_table(void) {
    const char *spec = getenv("KERNEL_WITHOUT");
    while (spec && *spec) {
        size_t len = strcspn(spec, ", ");
        add_item(spec, len);
        spec += len;
        spec += strspn(spec, ", ");
    }
    table_ready = 1;
}

/* The errno with which to refuse bpf(cmd, attr), or 0 to let it through. */
static int verdict(long cmd, const uint32_t *attr) {
    if (!table_ready) load_table();
    for (int i = 0; i < table_len; i++) {
        const struct refusal *r = &table[i];
        switch (r->what) {
        case W_CMD:
            if (cmd == (long)r->number) return r->err;
            break;
        case W_MAP:  /* union bpf_attr: map_type is the first u32 */
            if (cmd == 0 && attr && attr[0] == r->number) return r->err;
            break;
        case W_PROG: /* prog_type is the first u32 */
            if (cmd == 5 && attr && attr[0] == r->number) return r->err;
            break;
        case W_ATTACH: /* PROG_ATTACH (8) and LINK_CREATE (28): third u32 */
            if ((cmd == 8 || cmd == 28) && attr && attr[2] == r->number) return r->err;
            break;
        }
    }
    return 0;
}

static void note(long cmd, const uint32_t *attr, int err) {
    const char *path = getenv("KERNEL_WITHOUT_LOG");
    if (!path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "bpf cmd=%ld first=%u third=%u -> errno %d\n", cmd, attr ? attr[0] : 0,
            attr ? attr[2] : 0, err);
    fclose(f);
}

typedef long (*syscall_fn)(long, ...);

long syscall(long nr, ...) {
    static syscall_fn next;
    if (!next) next = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
    long a[6];
    va_list ap;
    va_start(ap, nr);
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (nr == SYS_bpf) {
        const uint32_t *attr = (const uint32_t *)a[1];
        int err = verdict(a[0], attr);
        if (err) {
            note(a[0], attr, err);
            errno = err;
            return -1;
        }
    }
    return next(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
