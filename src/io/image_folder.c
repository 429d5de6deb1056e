/* Folders of photos, listed the way torchvision's ImageFolder lists them so that class numbers
 * and item order agree with a model trained there: classes are the root's subfolder names in
 * sorted order, and files are ordered by (folder path, file name), which is what
 * sorted(os.walk(...)) followed by sorted(fnames) produces. The listing is read once at open;
 * decoding is bl_image_read's job. */
#include "beamlet/datasets.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_DEPTH 32

typedef struct folder_item {
    char *dir; /* relative to the root, "" at the root */
    char *name;
    int cls;
    char *path; /* root/dir/name, built after sorting */
} folder_item;

struct bl_image_folder {
    char *root;
    folder_item *items;
    int64_t count, cap;
    int64_t skipped;
    char **classes;
    int num_classes;
};

/* The identity of each folder on the current path, to step over symbolic-link loops. */
typedef struct walk_stack {
    dev_t dev[MAX_DEPTH + 1];
    ino_t ino[MAX_DEPTH + 1];
    int depth;
} walk_stack;

static bool is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot &&
           (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 || strcasecmp(dot, ".png") == 0);
}

static char *join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *s = malloc(na + nb + 2);
    if (!s) return NULL;
    memcpy(s, a, na);
    size_t n = na;
    if (na && nb) s[n++] = '/';
    memcpy(s + n, b, nb + 1);
    return s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmp_item(const void *pa, const void *pb) {
    const folder_item *a = pa, *b = pb;
    if (a->cls != b->cls) return a->cls < b->cls ? -1 : 1;
    int d = strcmp(a->dir, b->dir);
    return d ? d : strcmp(a->name, b->name);
}

static bl_status add_item(bl_image_folder *f, const char *dir, const char *name, int cls) {
    if (f->count == f->cap) {
        int64_t cap = f->cap ? f->cap * 2 : 256;
        folder_item *grown = realloc(f->items, sizeof *grown * (size_t)cap);
        if (!grown) return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory for the listing", f->root);
        f->items = grown;
        f->cap = cap;
    }
    folder_item *it = &f->items[f->count];
    it->dir = strdup(dir);
    it->name = strdup(name);
    it->cls = cls;
    it->path = NULL;
    if (!it->dir || !it->name) {
        free(it->dir);
        free(it->name);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory for the listing", f->root);
    }
    f->count++;
    return BL_OK;
}

/* Reads a folder's visible entry names (not '.'-prefixed), unsorted. */
static bl_status list_names(const char *path, char ***names, int *count) {
    *names = NULL;
    *count = 0;
    DIR *d = opendir(path);
    if (!d) return bl_error(BL_ERR_IO, "%s: cannot open folder: %s", path, strerror(errno));
    int cap = 0;
    struct dirent *e;
    bl_status s = BL_OK;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(*names, sizeof *grown * (size_t)cap);
            if (!grown) {
                s = bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory for the listing", path);
                break;
            }
            *names = grown;
        }
        if (!((*names)[*count] = strdup(e->d_name))) {
            s = bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory for the listing", path);
            break;
        }
        (*count)++;
    }
    closedir(d);
    return s;
}

static void free_names(char **names, int count) {
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}

/* Adds every image file under root/rel, recursively, as class `cls`. */
static bl_status walk(bl_image_folder *f, const char *rel, int cls, walk_stack *stack) {
    char *abs = join(f->root, rel);
    if (!abs) return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory", f->root);
    struct stat st;
    if (stat(abs, &st) != 0) {
        bl_status s = bl_error(BL_ERR_IO, "%s: %s", abs, strerror(errno));
        free(abs);
        return s;
    }
    for (int i = 0; i < stack->depth; i++) {
        if (stack->dev[i] == st.st_dev && stack->ino[i] == st.st_ino) {
            bl_log_warn("%s: a symbolic link loop; not followed", abs);
            free(abs);
            return BL_OK;
        }
    }
    if (stack->depth > MAX_DEPTH) {
        bl_status s = bl_error(BL_ERR_UNSUPPORTED, "%s: folders nest deeper than %d", abs, MAX_DEPTH);
        free(abs);
        return s;
    }
    stack->dev[stack->depth] = st.st_dev;
    stack->ino[stack->depth] = st.st_ino;
    stack->depth++;
    char **names;
    int n;
    bl_status s = list_names(abs, &names, &n);
    for (int i = 0; s == BL_OK && i < n; i++) {
        char *child = join(abs, names[i]);
        char *child_rel = join(rel, names[i]);
        if (!child || !child_rel) {
            s = bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory", abs);
        } else if (stat(child, &st) != 0) {
            f->skipped++; /* a dangling link or a file that vanished: nothing to read */
        } else if (S_ISDIR(st.st_mode)) {
            s = walk(f, child_rel, cls, stack);
        } else if (S_ISREG(st.st_mode) && is_image_name(names[i])) {
            s = add_item(f, rel, names[i], cls);
        } else {
            f->skipped++;
        }
        free(child);
        free(child_rel);
    }
    free_names(names, n);
    stack->depth--;
    free(abs);
    return s;
}

/* Splits the root's visible entries into subfolders (sorted) and whether image files exist. */
static bl_status scan_root(bl_image_folder *f, char ***dirs, int *ndirs, bool *has_images) {
    char **names;
    int n;
    BL_TRY(list_names(f->root, &names, &n));
    *ndirs = 0;
    *has_images = false;
    for (int i = 0; i < n; i++) {
        char *child = join(f->root, names[i]);
        struct stat st;
        bool dir = child && stat(child, &st) == 0 && S_ISDIR(st.st_mode);
        bool img = child && !dir && is_image_name(names[i]);
        free(child);
        if (dir) {
            names[(*ndirs)++] = names[i];
        } else {
            if (img) *has_images = true;
            free(names[i]);
        }
    }
    if (*ndirs > 1) qsort(names, (size_t)*ndirs, sizeof *names, cmp_str);
    *dirs = names;
    return BL_OK;
}

static bl_status build(bl_image_folder *f, bl_image_folder_mode mode) {
    char **dirs;
    int ndirs;
    bool has_images;
    BL_TRY(scan_root(f, &dirs, &ndirs, &has_images));
    if (mode == BL_IMAGE_FOLDER_AUTO) {
        mode = ndirs > 0 && !has_images ? BL_IMAGE_FOLDER_CLASSES : BL_IMAGE_FOLDER_FLAT;
    }
    walk_stack stack = {.depth = 0};
    bl_status s = BL_OK;
    if (mode == BL_IMAGE_FOLDER_FLAT) {
        free_names(dirs, ndirs);
        s = walk(f, "", -1, &stack);
        if (s == BL_OK && f->count == 0) {
            s = bl_error(BL_ERR_NOT_FOUND, "%s: no .jpg, .jpeg or .png files here", f->root);
        }
        return s;
    }
    f->classes = dirs;
    f->num_classes = ndirs;
    if (ndirs == 0) return bl_error(BL_ERR_NOT_FOUND, "%s: no class subfolders", f->root);
    /* The walk must start from the root so that a link from a class back up is seen as a loop. */
    struct stat st;
    if (stat(f->root, &st) == 0) {
        stack.dev[0] = st.st_dev;
        stack.ino[0] = st.st_ino;
        stack.depth = 1;
    }
    for (int k = 0; s == BL_OK && k < ndirs; k++) {
        int64_t before = f->count;
        s = walk(f, dirs[k], k, &stack);
        if (s == BL_OK && f->count == before) {
            s = bl_error(BL_ERR_NOT_FOUND,
                         "%s: class folder '%s' holds no .jpg, .jpeg or .png "
                         "files",
                         f->root, dirs[k]);
        }
    }
    return s;
}

bl_status bl_image_folder_open_mode(const char *dir, bl_image_folder_mode mode, bl_image_folder **out) {
    if (!out) return bl_error(BL_ERR_INVALID_ARG, "bl_image_folder_open: NULL output");
    *out = NULL;
    if (!dir || !*dir) return bl_error(BL_ERR_INVALID_ARG, "bl_image_folder_open: no folder");
    if (mode != BL_IMAGE_FOLDER_AUTO && mode != BL_IMAGE_FOLDER_CLASSES && mode != BL_IMAGE_FOLDER_FLAT) {
        return bl_error(BL_ERR_INVALID_ARG, "bl_image_folder_open: mode %d", (int)mode);
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return bl_error(BL_ERR_NOT_FOUND, "%s: not a folder", dir);
    }
    bl_image_folder *f = calloc(1, sizeof *f);
    if (!f || !(f->root = strdup(dir))) {
        free(f);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory", dir);
    }
    size_t n = strlen(f->root);
    while (n > 1 && f->root[n - 1] == '/') f->root[--n] = '\0';
    bl_status s = build(f, mode);
    if (s == BL_OK) {
        if (f->count > 1) qsort(f->items, (size_t)f->count, sizeof *f->items, cmp_item);
        for (int64_t i = 0; s == BL_OK && i < f->count; i++) {
            char *d = join(f->root, f->items[i].dir);
            f->items[i].path = d ? join(d, f->items[i].name) : NULL;
            free(d);
            if (!f->items[i].path) s = bl_error(BL_ERR_OUT_OF_MEMORY, "%s: no memory", dir);
        }
    }
    if (s != BL_OK) {
        bl_image_folder_free(f);
        return s;
    }
    *out = f;
    return BL_OK;
}

bl_status bl_image_folder_open(const char *dir, bl_image_folder **out) {
    return bl_image_folder_open_mode(dir, BL_IMAGE_FOLDER_AUTO, out);
}

void bl_image_folder_free(bl_image_folder *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->count; i++) {
        free(f->items[i].dir);
        free(f->items[i].name);
        free(f->items[i].path);
    }
    free(f->items);
    free_names(f->classes, f->num_classes);
    free(f->root);
    free(f);
}

int64_t bl_image_folder_count(const bl_image_folder *f) { return f ? f->count : 0; }

int64_t bl_image_folder_skipped(const bl_image_folder *f) { return f ? f->skipped : 0; }

const char *bl_image_folder_path(const bl_image_folder *f, int64_t i) {
    return f && i >= 0 && i < f->count ? f->items[i].path : NULL;
}

int bl_image_folder_class(const bl_image_folder *f, int64_t i) {
    return f && i >= 0 && i < f->count ? f->items[i].cls : -1;
}

int bl_image_folder_num_classes(const bl_image_folder *f) { return f ? f->num_classes : 0; }

const char *bl_image_folder_class_name(const bl_image_folder *f, int k) {
    return f && k >= 0 && k < f->num_classes ? f->classes[k] : NULL;
}
