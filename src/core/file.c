/* Durable file writes: temp file, flush, fsync, rename. A killed run never leaves a half file
 * under the final name. */
#define _POSIX_C_SOURCE 200809L
#include "beamlet/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* fsyncs the folder holding `path`, so the rename that put a file there survives a crash. */
static void sync_parent(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some filesystems refuse fsync on folders */
        close(fd);
    }
}

bl_status bl_file_write_atomic(const char *path, const void *data, size_t size) {
    /* A unique temp name in the target folder (mkstemp), so two writers of the same path never
     * share a temp file, and the rename stays within one filesystem. */
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof tmp) return bl_error(BL_ERR_INVALID_ARG, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return bl_error(bl_errno_status(errno), "%s: cannot create a temporary file: %s", path,
                        strerror(errno));
    (void)fchmod(fd, 0644);
    const unsigned char *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            /* Named by its final path: the temp file is gone, the file the user knows is not. */
            return bl_error(bl_errno_status(e), "%s: write failed: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    int synced = fsync(fd), sync_errno = errno;
    int closed = close(fd), close_errno = errno;
    if (synced != 0 || closed != 0) {
        unlink(tmp);
        return bl_error(BL_ERR_IO, "%s: flush failed: %s", path,
                        strerror(synced != 0 ? sync_errno : close_errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return bl_error(bl_errno_status(e), "%s: cannot rename into place: %s", path, strerror(e));
    }
    sync_parent(path);
    return BL_OK;
}

bl_status bl_file_read_all(const char *path, void **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return bl_error(bl_errno_status(errno), "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return bl_error(BL_ERR_IO, "%s: cannot seek", path);
    }
    long len = ftell(f);
    if (len < 0) {
        fclose(f);
        return bl_error(BL_ERR_IO, "%s: cannot tell size", path);
    }
    rewind(f);
    unsigned char *buf = malloc((size_t)len + 1);
    if (!buf) {
        fclose(f);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "%s: cannot allocate %ld bytes", path, len);
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    if (got != (size_t)len) {
        free(buf);
        return bl_error(BL_ERR_IO, "%s: short read (%zu of %ld bytes)", path, got, len);
    }
    buf[len] = '\0'; /* convenient for text; not counted in size */
    *data = buf;
    *size = (size_t)len;
    return BL_OK;
}

bl_status bl_mkdirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return bl_error(BL_ERR_INVALID_ARG, "mkdir: bad path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return bl_error(bl_errno_status(errno), "%s: cannot create directory: %s", buf, strerror(errno));
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return bl_error(BL_ERR_INVALID_ARG, "%s: exists and is not a directory", path);
    return BL_OK;
}

bool bl_file_exists(const char *path) { return access(path, F_OK) == 0; }

bl_status bl_exe_dir(char *buf, size_t size) {
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
        return bl_error(BL_ERR_NOT_FOUND, "the running program's path: /proc/self/exe: %s", strerror(errno));
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    if (slash) *slash = '\0';
    if ((size_t)snprintf(buf, size, "%s", slash ? path : ".") >= size)
        return bl_error(BL_ERR_INVALID_ARG, "the running program's folder %s is longer than %zu bytes", path,
                        size - 1);
    return BL_OK;
}
