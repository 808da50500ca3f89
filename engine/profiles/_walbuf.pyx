# cython: language_level=3
"""A SQLite VFS that hands the WAL's writes to the kernel in one piece.

SQLite writes each WAL frame with two ``pwrite`` calls, its 24-byte header
and then its page, so a batch of events whose commit changes ~300 pages
makes ~600 system calls, each with the kernel's fixed cost: ~12 % of the
writer's CPU (perf).  This VFS is the system's default one except for WAL
files, whose frames it keeps in a buffer and writes with one call per
124 KiB (the unix VFS writes at most 128 KiB - 1 at once):

* when a *commit frame* has been buffered (its header's second word, the
  database size after the commit, is non-zero; SQLite writes it last), so
  a transaction's frames are in the file, and a failure is reported by
  the write that SQLite checks, before SQLite makes the frames visible in
  the WAL index -- whatever ``PRAGMA synchronous`` says;
* before the WAL file is read, synced, truncated, sized, closed or given a
  file control, and before a write that does not continue the buffer;
* when the buffer is full (``buffer_kib``);
* before the connection gives up the WAL's write lock (``xShmLock`` of the
  main database file, which the VFS wraps for this alone): the buffer then
  holds only frames of a transaction rolled back after spilling pages,
  which SQLite would have written while it held the lock, and which must
  not land later on another connection's next commit.

Only the pattern it knows is buffered: the 32-byte WAL header and a 24-byte
frame header followed by its page.  Any other write flushes the buffer and
goes straight to the file.  The frames reach the file in the order SQLite
wrote them, only later: the file is always what SQLite would have left
had it stopped a little earlier, which is what a crash leaves anyway.
With ``synchronous=FULL`` the commit's ``xSync`` of the WAL follows the
flush, so an acknowledged batch is exactly as durable as before.  Journals
and temporary files are the default VFS's own files, untouched; so is the
database file, whose methods are forwarded, only its ``xShmLock`` watched.

The module finds SQLite's functions in the library Python's ``sqlite3``
module is linked with (:mod:`.walbuf` finds its path), so it needs no
SQLite headers to build, and registers nothing if that library is not
found.
"""
cdef extern from *:
    """
    #include <dlfcn.h>
    #include <stdlib.h>
    #include <string.h>
    #include <stddef.h>

    typedef long long mwb_i64;
    typedef struct mwb_file mwb_file;
    typedef struct mwb_methods mwb_methods;
    struct mwb_file { const mwb_methods *pMethods; };
    struct mwb_methods {                  /* sqlite3_io_methods, up to version 3 */
      int iVersion;
      int (*xClose)(mwb_file*);
      int (*xRead)(mwb_file*, void*, int, mwb_i64);
      int (*xWrite)(mwb_file*, const void*, int, mwb_i64);
      int (*xTruncate)(mwb_file*, mwb_i64);
      int (*xSync)(mwb_file*, int);
      int (*xFileSize)(mwb_file*, mwb_i64*);
      int (*xLock)(mwb_file*, int);
      int (*xUnlock)(mwb_file*, int);
      int (*xCheckReservedLock)(mwb_file*, int*);
      int (*xFileControl)(mwb_file*, int, void*);
      int (*xSectorSize)(mwb_file*);
      int (*xDeviceCharacteristics)(mwb_file*);
      int (*xShmMap)(mwb_file*, int, int, int, void volatile**);        /* version 2 */
      int (*xShmLock)(mwb_file*, int, int, int);
      void (*xShmBarrier)(mwb_file*);
      int (*xShmUnmap)(mwb_file*, int);
      int (*xFetch)(mwb_file*, mwb_i64, int, void**);                   /* version 3 */
      int (*xUnfetch)(mwb_file*, mwb_i64, void*);
    };
    typedef struct mwb_vfs mwb_vfs;
    struct mwb_vfs {                      /* sqlite3_vfs, up to version 3 */
      int iVersion;
      int szOsFile;
      int mxPathname;
      mwb_vfs *pNext;
      const char *zName;
      void *pAppData;
      int (*xOpen)(mwb_vfs*, const char*, mwb_file*, int, int*);
      void *rest[15];   /* xDelete .. xNextSystemCall: the default VFS's own */
    };

    #define MWB_OK 0
    #define MWB_OPEN_MAIN_DB 0x00000100
    #define MWB_OPEN_WAL 0x00080000
    #define MWB_SHM_UNLOCK 1
    #define MWB_WAL_WRITE_LOCK 0              /* the shared-memory lock slot of the WAL's writer */
    #define MWB_NAME "maple-walbuf"
    #define MWB_FRAME_HEADER 24
    #define MWB_WAL_HEADER 32

    /* A WAL file, and the main database file it belongs to: the default
       VFS's file lives right after each struct. */
    typedef struct mwb_wal mwb_wal;
    typedef struct mwb_db mwb_db;
    struct mwb_db {
      mwb_file base;
      mwb_file *real;
      mwb_wal *wal;         /* its WAL file while that is open */
    };
    struct mwb_wal {
      mwb_file base;
      mwb_file *real;
      mwb_db *db;           /* its main database file */
      char *buf;
      int cap, len;
      mwb_i64 start;        /* the file offset of buf[0] */
      int page_next;        /* a frame header was buffered last: its page comes next */
      int commit;           /* ... and it was a commit frame's */
    };

    static mwb_vfs mwb_vfs_obj;
    static mwb_vfs *mwb_orig = 0;
    static mwb_file *(*mwb_db_of)(const char*) = 0;     /* sqlite3_database_file_object */
    static int mwb_cap = 4 << 20;
    /* counters over the process, for tests and figures */
    static long long mwb_n_buffered = 0, mwb_n_flushes = 0, mwb_n_direct = 0, mwb_n_commits = 0,
                     mwb_n_released = 0;

    /* mwb_wal and mwb_db both begin with (base, real) */
    #define REAL(f) (((mwb_wal*)(f))->real)
    #define RM(f) (REAL(f)->pMethods)
    #define COUNT(c) __atomic_fetch_add(&(c), 1, __ATOMIC_RELAXED)

    /* The unix VFS writes at most 128 KiB - 1 per call (seekAndWriteFd masks
       the length with 0x1ffff), so the buffer goes out in chunks under that. */
    #define MWB_CHUNK 0x1f000

    static int mwb_flush(mwb_wal *w) {
      int rc = MWB_OK, done = 0;
      while (done < w->len && rc == MWB_OK) {
        int n = w->len - done < MWB_CHUNK ? w->len - done : MWB_CHUNK;
        rc = w->real->pMethods->xWrite(w->real, w->buf + done, n, w->start + done);
        COUNT(mwb_n_flushes);
        done += n;
      }
      w->len = 0;
      w->page_next = w->commit = 0;
      return rc;
    }

    /* Append to the buffer if the write continues it and fits; else flush
       and start the buffer with it.  Returns 0 if kept, else 1 (not kept:
       too big, or no memory) with *rc the flush's result. */
    static int mwb_keep(mwb_wal *w, const void *p, int n, mwb_i64 off, int *rc) {
      *rc = MWB_OK;
      if (w->len > 0 && off == w->start + w->len && w->len + n <= w->cap) {
        memcpy(w->buf + w->len, p, n); w->len += n;
        return 0;
      }
      *rc = mwb_flush(w);
      if (*rc != MWB_OK) return 1;
      if (w->buf == 0) {
        w->buf = (char*)malloc(mwb_cap);
        w->cap = w->buf ? mwb_cap : 0;
      }
      if (n > w->cap) return 1;
      memcpy(w->buf, p, n); w->len = n; w->start = off;
      return 0;
    }

    static int mwb_write(mwb_file *f, const void *p, int n, mwb_i64 off) {
      mwb_wal *w = (mwb_wal*)f;
      int rc;
      if (w->page_next && off == w->start + w->len) {
        /* the page of the frame whose header is buffered */
        int commit = w->commit;
        w->page_next = w->commit = 0;
        if (mwb_keep(w, p, n, off, &rc) == 0) {
          COUNT(mwb_n_buffered);
          if (commit) { COUNT(mwb_n_commits); rc = mwb_flush(w); }
          return rc;
        }
        if (rc != MWB_OK) return rc;
      } else if (n == MWB_FRAME_HEADER || (n == MWB_WAL_HEADER && off == 0)) {
        const unsigned char *h = (const unsigned char*)p;
        int frame = n == MWB_FRAME_HEADER;
        int commit = frame && (h[4] | h[5] | h[6] | h[7]) != 0;
        if (w->page_next) { rc = mwb_flush(w); if (rc != MWB_OK) return rc; }
        if (mwb_keep(w, p, n, off, &rc) == 0) {
          COUNT(mwb_n_buffered);
          w->page_next = frame; w->commit = commit;
          return MWB_OK;
        }
        if (rc != MWB_OK) return rc;
      } else {
        rc = mwb_flush(w);
        if (rc != MWB_OK) return rc;
      }
      COUNT(mwb_n_direct);
      return RM(f)->xWrite(REAL(f), p, n, off);
    }

    static int mwb_close(mwb_file *f) {
      mwb_wal *w = (mwb_wal*)f;
      int rc = mwb_flush(w);
      int rc2 = RM(f)->xClose(REAL(f));
      if (w->db && w->db->wal == w) w->db->wal = 0;
      w->db = 0;
      free(w->buf); w->buf = 0; w->cap = 0;
      return rc != MWB_OK ? rc : rc2;
    }
    static int mwb_read(mwb_file *f, void *p, int n, mwb_i64 off) {
      int rc = mwb_flush((mwb_wal*)f);
      return rc != MWB_OK ? rc : RM(f)->xRead(REAL(f), p, n, off);
    }
    static int mwb_truncate(mwb_file *f, mwb_i64 size) {
      int rc = mwb_flush((mwb_wal*)f);
      return rc != MWB_OK ? rc : RM(f)->xTruncate(REAL(f), size);
    }
    static int mwb_sync(mwb_file *f, int flags) {
      int rc = mwb_flush((mwb_wal*)f);
      return rc != MWB_OK ? rc : RM(f)->xSync(REAL(f), flags);
    }
    static int mwb_size(mwb_file *f, mwb_i64 *p) {
      int rc = mwb_flush((mwb_wal*)f);
      return rc != MWB_OK ? rc : RM(f)->xFileSize(REAL(f), p);
    }
    static int mwb_fcntl(mwb_file *f, int op, void *a) {
      int rc = mwb_flush((mwb_wal*)f);
      return rc != MWB_OK ? rc : RM(f)->xFileControl(REAL(f), op, a);
    }
    static int mwb_lock(mwb_file *f, int l) { return RM(f)->xLock(REAL(f), l); }
    static int mwb_unlock(mwb_file *f, int l) { return RM(f)->xUnlock(REAL(f), l); }
    static int mwb_reserved(mwb_file *f, int *p) { return RM(f)->xCheckReservedLock(REAL(f), p); }
    static int mwb_sector(mwb_file *f) { return RM(f)->xSectorSize(REAL(f)); }
    static int mwb_devchar(mwb_file *f) { return RM(f)->xDeviceCharacteristics(REAL(f)); }

    /* version 1: SQLite calls no shared-memory or mmap method on a WAL file */
    static const mwb_methods mwb_wal_methods = {
      1, mwb_close, mwb_read, mwb_write, mwb_truncate, mwb_sync, mwb_size,
      mwb_lock, mwb_unlock, mwb_reserved, mwb_fcntl, mwb_sector, mwb_devchar,
      0, 0, 0, 0, 0, 0
    };

    /* ---- the main database file: the default VFS's, every method forwarded,
       and before the connection gives up the WAL's write lock, its WAL's
       buffer is written.  At that moment the buffer holds only frames of a
       transaction rolled back after spilling pages (a commit's are written
       at its commit frame); SQLite wrote those at once, while it held the
       lock, and writing them later could put them over the frames of
       another connection's next commit. */
    static int mwb_db_close(mwb_file *f) {
      mwb_db *d = (mwb_db*)f;
      if (d->wal) { d->wal->db = 0; d->wal = 0; }
      return RM(f)->xClose(REAL(f));
    }
    static int mwb_db_read(mwb_file *f, void *p, int n, mwb_i64 o) { return RM(f)->xRead(REAL(f), p, n, o); }
    static int mwb_db_write(mwb_file *f, const void *p, int n, mwb_i64 o) { return RM(f)->xWrite(REAL(f), p, n, o); }
    static int mwb_db_truncate(mwb_file *f, mwb_i64 n) { return RM(f)->xTruncate(REAL(f), n); }
    static int mwb_db_sync(mwb_file *f, int flags) { return RM(f)->xSync(REAL(f), flags); }
    static int mwb_db_size(mwb_file *f, mwb_i64 *p) { return RM(f)->xFileSize(REAL(f), p); }
    static int mwb_db_fcntl(mwb_file *f, int op, void *a) { return RM(f)->xFileControl(REAL(f), op, a); }
    static int mwb_db_shmmap(mwb_file *f, int pg, int sz, int extend, void volatile **pp) {
      return RM(f)->xShmMap(REAL(f), pg, sz, extend, pp);
    }
    static int mwb_db_shmlock(mwb_file *f, int offset, int n, int flags) {
      mwb_db *d = (mwb_db*)f;
      if ((flags & MWB_SHM_UNLOCK) && offset == MWB_WAL_WRITE_LOCK && d->wal && d->wal->len > 0) {
        COUNT(mwb_n_released);
        mwb_flush(d->wal);            /* its error: of frames no commit needs, so nothing to report */
      }
      return RM(f)->xShmLock(REAL(f), offset, n, flags);
    }
    static void mwb_db_barrier(mwb_file *f) { RM(f)->xShmBarrier(REAL(f)); }
    static int mwb_db_shmunmap(mwb_file *f, int del) { return RM(f)->xShmUnmap(REAL(f), del); }
    static int mwb_db_fetch(mwb_file *f, mwb_i64 o, int n, void **pp) {
      if (RM(f)->iVersion < 3 || !RM(f)->xFetch) { *pp = 0; return MWB_OK; }   /* "read it instead" */
      return RM(f)->xFetch(REAL(f), o, n, pp);
    }
    static int mwb_db_unfetch(mwb_file *f, mwb_i64 o, void *p) {
      if (RM(f)->iVersion < 3 || !RM(f)->xUnfetch) return MWB_OK;
      return RM(f)->xUnfetch(REAL(f), o, p);
    }

    static const mwb_methods mwb_db_methods = {
      3, mwb_db_close, mwb_db_read, mwb_db_write, mwb_db_truncate, mwb_db_sync, mwb_db_size,
      mwb_lock, mwb_unlock, mwb_reserved, mwb_db_fcntl, mwb_sector, mwb_devchar,
      mwb_db_shmmap, mwb_db_shmlock, mwb_db_barrier, mwb_db_shmunmap, mwb_db_fetch, mwb_db_unfetch
    };

    /* Open ``f`` as the default VFS's own file, in place. */
    static int mwb_open_plain(const char *name, mwb_file *f, int flags, int *out) {
      return mwb_orig->xOpen(mwb_orig, name, f, flags, out);
    }

    static int mwb_open(mwb_vfs *vfs, const char *name, mwb_file *f, int flags, int *out) {
      int rc;
      (void)vfs;
      if (flags & MWB_OPEN_MAIN_DB) {
        mwb_db *d = (mwb_db*)f;
        memset(d, 0, sizeof(*d));
        d->real = (mwb_file*)(d + 1);
        rc = mwb_orig->xOpen(mwb_orig, name, d->real, flags, out);
        if (rc != MWB_OK || !d->real->pMethods) { d->base.pMethods = 0; return rc; }
        if (d->real->pMethods->iVersion < 2) {     /* no shared memory, so no WAL: nothing to watch */
          d->real->pMethods->xClose(d->real);
          return mwb_open_plain(name, f, flags, out);
        }
        d->base.pMethods = &mwb_db_methods;
        return MWB_OK;
      }
      if (flags & MWB_OPEN_WAL) {
        mwb_file *db = name ? mwb_db_of(name) : 0;
        if (db && db->pMethods == &mwb_db_methods) {   /* its database is ours: buffer it */
          mwb_wal *w = (mwb_wal*)f;
          memset(w, 0, sizeof(*w));
          w->real = (mwb_file*)(w + 1);
          rc = mwb_orig->xOpen(mwb_orig, name, w->real, flags, out);
          /* SQLite calls no method of a file whose pMethods is NULL after a failed open */
          if (rc != MWB_OK || !w->real->pMethods) { w->base.pMethods = 0; return rc; }
          w->base.pMethods = &mwb_wal_methods;
          w->db = (mwb_db*)db;
          w->db->wal = w;
          return MWB_OK;
        }
      }
      return mwb_open_plain(name, f, flags, out);  /* journals, temporary files, a WAL we cannot watch */
    }

    /* 0 registered (now or before); else 1 the library cannot be opened,
       2 a function is missing, 3 no default VFS, 4 registration failed */
    static int mwb_setup(const char *libpath, int cap) {
      void *lib;
      mwb_vfs *(*find)(const char*);
      int (*reg)(mwb_vfs*, int);
      mwb_vfs *orig;
      size_t size;
      if (mwb_orig) return 0;
      lib = dlopen(libpath, RTLD_NOW | RTLD_NOLOAD);
      if (!lib) return 1;
      find = (mwb_vfs *(*)(const char*))dlsym(lib, "sqlite3_vfs_find");
      reg = (int (*)(mwb_vfs*, int))dlsym(lib, "sqlite3_vfs_register");
      mwb_db_of = (mwb_file *(*)(const char*))dlsym(lib, "sqlite3_database_file_object");
      if (!find || !reg || !mwb_db_of) return 2;
      orig = find(0);
      if (!orig) return 3;
      if (cap > 0) mwb_cap = cap;
      size = offsetof(mwb_vfs, rest) + sizeof(void*) * (orig->iVersion >= 3 ? 15 : orig->iVersion == 2 ? 12 : 11);
      memset(&mwb_vfs_obj, 0, sizeof(mwb_vfs_obj));
      memcpy(&mwb_vfs_obj, orig, size);
      mwb_vfs_obj.szOsFile = (int)(sizeof(mwb_wal) > sizeof(mwb_db) ? sizeof(mwb_wal) : sizeof(mwb_db))
                             + orig->szOsFile;
      mwb_vfs_obj.pNext = 0;
      mwb_vfs_obj.zName = MWB_NAME;
      mwb_vfs_obj.xOpen = mwb_open;
      mwb_orig = orig;
      if (reg(&mwb_vfs_obj, 0) != MWB_OK) { mwb_orig = 0; return 4; }
      return 0;
    }
    """
    int mwb_setup(const char *libpath, int cap)
    long long mwb_n_buffered, mwb_n_flushes, mwb_n_direct, mwb_n_commits, mwb_n_released
    const char *MWB_NAME


NAME = MWB_NAME.decode()

_FAILURES = {1: "the library cannot be opened", 2: "the library lacks sqlite3_vfs_register, "
             "sqlite3_vfs_find or sqlite3_database_file_object (SQLite before 3.31)",
             3: "SQLite has no default VFS", 4: "sqlite3_vfs_register failed"}


def register(libpath: str, buffer_kib: int = 4096) -> str:
    """Register the VFS (once) in the SQLite library at ``libpath``, which
    must be loaded already; its name.  ``buffer_kib``: the write buffer of
    each WAL file, allocated at its first write.  Raises OSError."""
    rc = mwb_setup(libpath.encode(), buffer_kib * 1024)
    if rc:
        raise OSError(f"{libpath}: {_FAILURES.get(rc, rc)}")
    return NAME


def stats() -> dict:
    """Counters over every WAL file of the process: writes kept in a
    buffer, buffers written (one system call per 124 KiB), writes passed straight
    on, commit frames (each flushed at once), buffers written as the write lock
    was given up (a rolled-back transaction's spilled frames)."""
    return {"buffered": mwb_n_buffered, "flushes": mwb_n_flushes, "direct": mwb_n_direct,
            "commits": mwb_n_commits, "released": mwb_n_released}
