/* The compiled inner loops of near-dedup.  kernels.py and verify.py wrap them: they make the
 * output arrays, this file fills them.
 *
 * Why C: per document the work is a few hundred shingles times 128 permutations, then per
 * candidate pair a merge of two sorted sets and the own-part check.  Fused into one loop per
 * document or pair this runs 5-20x faster than numpy, and every function releases the GIL so
 * two threads use both cores without worker processes.  (These loops were numba until its
 * start -- import, typing registries, cache load: ~0.4 s serial per process -- was a fifth of a
 * 100k-document run.)
 *
 * Arguments are C-contiguous buffers (numpy arrays) checked for item size, or plain numbers;
 * see parse().  Each function equals a plain-Python reference, tested bit for bit
 * (tests/test_dedup_signatures.py): shingles.tokens / shingles / shingle_hash / exact_hash,
 * datasketch's MinHash (scheme affine32), np.unique, Python's set operations, and the
 * own-part rules of verify.py's docstring.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint8_t u8;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t i64;

#define GOLD 0x9E3779B97F4A7C15ULL
#define EMPTY 0xFFFFFFFFu
enum { WORD = 0, SEP = 1, CJK = 2 };        /* character classes (shingles.py) */
enum { SLOW = 2, ASTRAL = 4 };              /* scan's flags */

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
/* The MinHash loop (128 multiply-adds and mins per shingle) is most of the sketch time: built
 * for AVX-512 and AVX2 too, picked at load time, so one build runs on any x86-64. */
#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT
#endif

/* ---- arguments ------------------------------------------------------------------------ */

#define MAX_VIEWS 20
typedef struct {
    Py_buffer view[MAX_VIEWS];
    int n_views;
    i64 ints[8];
    double reals[2];
} Args;

static void release(Args *a)
{
    for (int i = 0; i < a->n_views; i++)
        PyBuffer_Release(&a->view[i]);
    a->n_views = 0;
}

/* ``spec``: per argument "r1", "r4", "r8" (an array of 1-, 4- or 8-byte items, read), "w1", "w4",
 * "w8" (written in place: must be writable and contiguous, never copied), "n" (an integer) or
 * "d" (a float).  Arrays land in a->view[] in order, integers in a->ints[], floats in a->reals[]. */
static int parse(PyObject *args, const char *spec, Args *a, const char *name)
{
    Py_ssize_t n_args = PyTuple_GET_SIZE(args);
    int k = 0, n_ints = 0, n_reals = 0;
    a->n_views = 0;
    for (const char *s = spec; *s; k++) {
        char c = *s++;
        if (k >= n_args) {
            PyErr_Format(PyExc_TypeError, "%s: too few arguments (%zd)", name, n_args);
            goto fail;
        }
        PyObject *o = PyTuple_GET_ITEM(args, k);
        if (c == 'n') {
            a->ints[n_ints++] = PyLong_AsLongLong(o);
            if (PyErr_Occurred())
                goto fail;
        } else if (c == 'd') {
            a->reals[n_reals++] = PyFloat_AsDouble(o);
            if (PyErr_Occurred())
                goto fail;
        } else {
            int size = *s++ - '0';
            Py_buffer *v = &a->view[a->n_views];
            if (PyObject_GetBuffer(o, v, PyBUF_C_CONTIGUOUS | (c == 'w' ? PyBUF_WRITABLE : 0)) < 0)
                goto fail;
            a->n_views++;
            if (v->itemsize != size) {
                PyErr_Format(PyExc_TypeError, "%s: argument %d has %zd-byte items, expected %d", name, k + 1,
                             v->itemsize, size);
                goto fail;
            }
        }
    }
    if (k != n_args) {
        PyErr_Format(PyExc_TypeError, "%s: %zd arguments, expected %d", name, n_args, k);
        goto fail;
    }
    return 0;
fail:
    release(a);
    return -1;
}

#define BUF(i, T) ((T *)a.view[i].buf)
#define LEN(i) ((i64)(a.view[i].len / a.view[i].itemsize))

/* ---- hashing ---------------------------------------------------------------------------- */

static inline u64 mix64(u64 x)              /* splitmix64's finalizer (shingles.mix64) */
{
    x += GOLD;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static inline u32 fmix32(u32 h)             /* MurmurHash3's: datasketch's pre-mix (_fmix(hv, 32)) */
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    return h ^ (h >> 16);
}

/* ---- texts -------------------------------------------------------------------------------- */

/* utf8_decode(data, byte_off, cps, off) -> code points written.  Texts as valid UTF-8 (text d =
 * data[byte_off[d]:byte_off[d+1]], as polars holds them) -> code points and each text's start. */
static PyObject *py_utf8_decode(PyObject *self, PyObject *args)
{
    Args a;
    if (parse(args, "r1r8w4w8", &a, "utf8_decode"))
        return NULL;
    const u8 *data = BUF(0, u8);
    const i64 *byte_off = BUF(1, i64);
    u32 *cps = BUF(2, u32);
    i64 *off = BUF(3, i64), n_docs = LEN(1) - 1, k = 0;
    Py_BEGIN_ALLOW_THREADS
    off[0] = 0;
    for (i64 d = 0; d < n_docs; d++) {
        i64 i = byte_off[d], end = byte_off[d + 1];
        while (i < end) {
            u32 b = data[i], cp;
            if (b < 0x80) {
                cp = b;
                i += 1;
            } else if (b < 0xE0) {
                cp = ((b & 0x1F) << 6) | (data[i + 1] & 0x3F);
                i += 2;
            } else if (b < 0xF0) {
                cp = ((b & 0x0F) << 12) | ((data[i + 1] & 0x3Fu) << 6) | (data[i + 2] & 0x3F);
                i += 3;
            } else {
                cp = ((b & 0x07) << 18) | ((data[i + 1] & 0x3Fu) << 12) | ((data[i + 2] & 0x3Fu) << 6)
                     | (data[i + 3] & 0x3F);
                i += 4;
            }
            cps[k++] = cp;
        }
        off[d + 1] = k;
    }
    Py_END_ALLOW_THREADS
    release(&a);
    return PyLong_FromLongLong(k);
}

/* heads(cps_a, off_a, cps_b, off_b, use_b, out, out_off): copy the start of each document, from
 * text set A, or B where use_b; out_off (made by the caller) says how many code points. */
static PyObject *py_heads(PyObject *self, PyObject *args)
{
    Args a;
    if (parse(args, "r4r8r4r8r1w4r8", &a, "heads"))
        return NULL;
    const u32 *cps_a = BUF(0, u32), *cps_b = BUF(2, u32);
    const i64 *off_a = BUF(1, i64), *off_b = BUF(3, i64), *out_off = BUF(6, i64);
    const u8 *use_b = BUF(4, u8);
    u32 *out = BUF(5, u32);
    i64 n_docs = LEN(4);
    Py_BEGIN_ALLOW_THREADS
    for (i64 d = 0; d < n_docs; d++) {
        const u32 *src = use_b[d] ? cps_b + off_b[d] : cps_a + off_a[d];
        memcpy(out + out_off[d], src, (size_t)(out_off[d + 1] - out_off[d]) * sizeof(u32));
    }
    Py_END_ALLOW_THREADS
    release(&a);
    Py_RETURN_NONE;
}

/* scan(cps, char_off, slow, flags): per document, SLOW if it holds a BMP character the tables
 * cannot fold alone (slow[cp] == 1), ASTRAL if it holds one beyond the BMP. */
static PyObject *py_scan(PyObject *self, PyObject *args)
{
    Args a;
    if (parse(args, "r4r8r1w1", &a, "scan"))
        return NULL;
    const u32 *cps = BUF(0, u32);
    const i64 *char_off = BUF(1, i64);
    const u8 *slow = BUF(2, u8);
    u8 *flags = BUF(3, u8);
    i64 n_docs = LEN(1) - 1;
    Py_BEGIN_ALLOW_THREADS
    for (i64 d = 0; d < n_docs; d++) {
        u8 f = 0;
        for (i64 i = char_off[d]; i < char_off[d + 1]; i++) {
            u32 cp = cps[i];
            if (cp > 0xFFFF)
                f |= ASTRAL;
            else if (slow[cp])
                f |= SLOW;
        }
        flags[d] = f;
    }
    Py_END_ALLOW_THREADS
    release(&a);
    Py_RETURN_NONE;
}

/* ---- sketch ------------------------------------------------------------------------------- */

static inline int ends_sentence(u32 cp)
{
    /* 。！？；… and their ASCII forms (NFKC has folded full-width ones), and line breaks */
    return cp == 0x3002 || cp == 0x21 || cp == 0x3F || cp == 0x3B || cp == 0x2E || cp == 0x2026 || cp == 0x0A;
}

static inline int char_class(u32 cp, const u8 *klass, const u32 *astral_cp, const u8 *astral_cls, i64 n_astral)
{
    if (cp <= 0xFFFF)
        return klass[cp];
    i64 lo = 0, hi = n_astral;               /* binary search in the sorted astral code points */
    while (lo < hi) {
        i64 mid = (lo + hi) / 2;
        if (astral_cp[mid] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n_astral && astral_cp[lo] == cp ? astral_cls[lo] : WORD;
}

typedef struct {
    const u32 *cps, *fold, *astral_cp, *perm_a, *perm_b;
    const i64 *char_off;
    const u8 *klass, *astral_cls;
    const u64 *wmult;
    i64 n_docs, n_astral, n_perm, n_cjk, n_word;
    u32 *hv, *sig;
    i64 *off, *tok_off;
    u64 *exact, *tok;
    u8 *sizes, *cut;
} Sketch;

/* Per document: fold each character (NFKC + lower case of a BMP one), class it, cut tokens (a
 * word, or one CJK character), then the whole-text hash, the shingle hashes in text order and
 * the MinHash signature.  Returns the shingles written; s->tok_off[n_docs] is the tokens. */
HOT static i64 sketch_docs(Sketch *s)
{
    i64 pos = 0;
    for (i64 d = 0; d < s->n_docs; d++) {
        i64 n_tok = 0, n_cjk_tok = 0, k = 0;
        int in_word = 0;
        i64 t0 = s->tok_off[d];
        for (i64 i = s->char_off[d]; i < s->char_off[d + 1]; i++) {
            u32 cp = s->cps[i];
            if (cp <= 0xFFFF)
                cp = s->fold[cp];
            int c = char_class(cp, s->klass, s->astral_cp, s->astral_cls, s->n_astral);
            if (c == SEP) {
                in_word = 0;
                if (n_tok > 0 && ends_sentence(cp))
                    s->cut[t0 + n_tok - 1] = 1;
                continue;
            }
            if (c == CJK || !in_word) {       /* a CJK character, or the first letter of a word */
                s->tok[n_tok++] = 0;
                k = 0;
                if (c == CJK)
                    n_cjk_tok++;
            }
            in_word = c == WORD;
            s->tok[n_tok - 1] += mix64((u64)cp | ((u64)k << 32));
            k++;
        }
        s->tok_off[d + 1] = t0 + n_tok;
        if (n_tok > 0)
            s->cut[t0 + n_tok - 1] = 1;       /* the text's end ends its last sentence */
        u64 ex = 0;
        for (i64 t = 0; t < n_tok; t++)
            ex += mix64(s->tok[t] + (u64)t * GOLD);
        s->exact[d] = ex;
        i64 n = 2 * n_cjk_tok >= n_tok ? s->n_cjk : s->n_word;
        s->sizes[d] = (u8)n;
        i64 width = n < n_tok ? n : n_tok;
        i64 n_win = n_tok > 0 ? n_tok - width + 1 : 0;
        u32 *row = s->sig + d * s->n_perm;
        for (i64 w = 0; w < n_win; w++) {
            u64 acc = 0;
            for (i64 j = 0; j < width; j++)
                acc += s->tok[w + j] * s->wmult[j];
            u32 h = (u32)mix64(acc);
            s->hv[pos + w] = h;
            u32 x = fmix32(h);
            for (i64 p = 0; p < s->n_perm; p++) {   /* datasketch affine32: a * x + b mod 2^32, min */
                u32 v = s->perm_a[p] * x + s->perm_b[p];
                row[p] = v < row[p] ? v : row[p];
            }
        }
        pos += n_win;
        s->off[d + 1] = pos;
    }
    return pos;
}

/* sketch(cps, char_off, fold, klass, astral_cp, astral_cls, n_cjk, n_word, wmult, perm_a, perm_b,
 *        hv, off, exact, sig, sizes, cut, tok_off) -> (shingles, tokens).  The caller makes the
 * outputs: hv and cut as long as cps (upper bounds), off and tok_off zeroed, sig all 0xFFFFFFFF. */
static PyObject *py_sketch(PyObject *self, PyObject *args)
{
    Args a;
    if (parse(args, "r4r8r4r1r4r1nnr8r4r4w4w8w8w4w1w1w8", &a, "sketch"))
        return NULL;
    Sketch s = {
        .cps = BUF(0, u32), .char_off = BUF(1, i64), .fold = BUF(2, u32), .klass = BUF(3, u8),
        .astral_cp = BUF(4, u32), .astral_cls = BUF(5, u8), .wmult = BUF(6, u64),
        .perm_a = BUF(7, u32), .perm_b = BUF(8, u32),
        .hv = BUF(9, u32), .off = BUF(10, i64), .exact = BUF(11, u64), .sig = BUF(12, u32),
        .sizes = BUF(13, u8), .cut = BUF(14, u8), .tok_off = BUF(15, i64),
        .n_docs = LEN(1) - 1, .n_astral = LEN(4), .n_perm = LEN(7), .n_cjk = a.ints[0], .n_word = a.ints[1],
    };
    i64 longest = 0, pos = 0;
    for (i64 d = 0; d < s.n_docs; d++)
        if (s.char_off[d + 1] - s.char_off[d] > longest)
            longest = s.char_off[d + 1] - s.char_off[d];
    if (LEN(6) < (s.n_cjk > s.n_word ? s.n_cjk : s.n_word) || LEN(12) != s.n_docs * s.n_perm || LEN(8) != s.n_perm) {
        release(&a);
        return PyErr_Format(PyExc_ValueError, "sketch: array sizes do not match");
    }
    s.tok = malloc((size_t)(longest + 1) * sizeof(u64));
    if (!s.tok) {
        release(&a);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    pos = sketch_docs(&s);
    Py_END_ALLOW_THREADS
    free(s.tok);
    i64 n_tokens = s.tok_off[s.n_docs];
    release(&a);
    return Py_BuildValue("LL", (long long)pos, (long long)n_tokens);
}

/* band_keys(sigs, n_fields, n_docs, n_perm, bands, rows, keys): per document and band a 64-bit
 * hash of the band's rows in every field's signature (sigs: fields x docs x n_perm), mixed row
 * by row: key = mix64(key * GOLD + v + f + 1). */
static PyObject *py_band_keys(PyObject *self, PyObject *args)
{
    Args a;
    if (parse(args, "r4nnnnnw8", &a, "band_keys"))
        return NULL;
    const u32 *sigs = BUF(0, u32);
    u64 *keys = BUF(1, u64);
    i64 n_fields = a.ints[0], n_docs = a.ints[1], n_perm = a.ints[2], bands = a.ints[3], rows = a.ints[4];
    if (LEN(0) != n_fields * n_docs * n_perm || LEN(1) != n_docs * bands || bands * rows > n_perm) {
        release(&a);
        return PyErr_Format(PyExc_ValueError, "band_keys: array sizes do not match");
    }
    Py_BEGIN_ALLOW_THREADS
    for (i64 d = 0; d < n_docs; d++)
        for (i64 band = 0; band < bands; band++) {
            u64 key = 0;
            for (i64 f = 0; f < n_fields; f++)
                for (i64 k = 0; k < rows; k++)
                    key = mix64(key * GOLD + sigs[(f * n_docs + d) * n_perm + band * rows + k] + (u64)(f + 1));
            keys[d * bands + band] = key;
        }
    Py_END_ALLOW_THREADS
    release(&a);
    Py_RETURN_NONE;
}

/* ---- sorted sets ---------------------------------------------------------------------------- */

/* Sort keys[:m] ascending, carrying pos: insertion sort for a few, else an LSD radix sort on
 * bytes (no comparisons to mispredict: 2-2.5x a quicksort on shingle sets).  The result ends in
 * *keys / *pos (the buffers may have swapped with the temporaries). */
static void sort_with_positions(u32 **keys, u32 **pos, u32 **keys_tmp, u32 **pos_tmp, i64 m)
{
    u32 *k0 = *keys, *p0 = *pos;
    if (m <= 32) {
        for (i64 k = 1; k < m; k++) {
            u32 x = k0[k], p = p0[k];
            i64 j = k - 1;
            while (j >= 0 && k0[j] > x) {
                k0[j + 1] = k0[j];
                p0[j + 1] = p0[j];
                j--;
            }
            k0[j + 1] = x;
            p0[j + 1] = p;
        }
        return;
    }
    i64 count[256];
    for (int shift = 0; shift < 32; shift += 8) {
        u32 *src_k = *keys, *src_p = *pos, *dst_k = *keys_tmp, *dst_p = *pos_tmp;
        memset(count, 0, sizeof count);
        for (i64 k = 0; k < m; k++)
            count[(src_k[k] >> shift) & 255]++;
        i64 total = 0;
        for (int c = 0; c < 256; c++) {
            i64 here = count[c];
            count[c] = total;
            total += here;
        }
        for (i64 k = 0; k < m; k++) {
            i64 j = count[(src_k[k] >> shift) & 255]++;
            dst_k[j] = src_k[k];
            dst_p[j] = src_p[k];
        }
        *keys = dst_k, *pos = dst_p, *keys_tmp = src_k, *pos_tmp = src_p;
    }
}

/* sorted_sets_into(hv, off, docs, start, vals, vals_end, rank): the shingle hashes of documents
 * docs (document d = hv[off[d]:off[d+1]], in text order) as sorted sets, for exact Jaccard, and
 * each shingle's rank: the index of its value in its document's set (so a check over the
 * shingles in text order needs no search).  The i-th of docs gets its ranks at
 * rank[start[i]:start[i] + its length] and its set at vals[start[i]:vals_end[i]]; threads fill
 * disjoint parts of the same arrays. */
static PyObject *py_sorted_sets_into(PyObject *self, PyObject *args)
{
    Args a;
    if (parse(args, "r4r8r8r8w4w8w4", &a, "sorted_sets_into"))
        return NULL;
    const u32 *hv = BUF(0, u32);
    const i64 *off = BUF(1, i64), *docs = BUF(2, i64), *start = BUF(3, i64);
    u32 *vals = BUF(4, u32), *rank = BUF(6, u32);
    i64 *vals_end = BUF(5, i64), n = LEN(2), longest = 0;
    for (i64 i = 0; i < n; i++)
        if (off[docs[i] + 1] - off[docs[i]] > longest)
            longest = off[docs[i] + 1] - off[docs[i]];
    u32 *scratch = malloc((size_t)(4 * longest + 4) * sizeof(u32));
    if (!scratch) {
        release(&a);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (i64 i = 0; i < n; i++) {
        u32 *keys = scratch, *pos = scratch + longest + 1;
        u32 *keys_tmp = scratch + 2 * (longest + 1), *pos_tmp = scratch + 3 * (longest + 1);
        i64 lo = off[docs[i]], m = off[docs[i] + 1] - lo, at = start[i], u = -1;
        for (i64 k = 0; k < m; k++) {
            keys[k] = hv[lo + k];
            pos[k] = (u32)k;
        }
        sort_with_positions(&keys, &pos, &keys_tmp, &pos_tmp, m);
        for (i64 k = 0; k < m; k++) {
            if (k == 0 || keys[k] != keys[k - 1])
                vals[at + ++u] = keys[k];
            rank[at + pos[k]] = (u32)u;
        }
        vals_end[i] = at + u + 1;
    }
    Py_END_ALLOW_THREADS
    free(scratch);
    release(&a);
    Py_RETURN_NONE;
}

/* gather_ragged(values, off, rows, out, out_start): copy values[off[r]:off[r+1]] (bytes) of each
 * of rows to out[out_start[i]:]. */
static PyObject *py_gather_ragged(PyObject *self, PyObject *args)
{
    Args a;
    if (parse(args, "r1r8r8w1r8", &a, "gather_ragged"))
        return NULL;
    const u8 *values = BUF(0, u8);
    const i64 *off = BUF(1, i64), *rows = BUF(2, i64), *out_start = BUF(4, i64);
    u8 *out = BUF(3, u8);
    i64 n = LEN(2);
    Py_BEGIN_ALLOW_THREADS
    for (i64 i = 0; i < n; i++)
        memcpy(out + out_start[i], values + off[rows[i]], (size_t)(off[rows[i] + 1] - off[rows[i]]));
    Py_END_ALLOW_THREADS
    release(&a);
    Py_RETURN_NONE;
}

static double jaccard(const u32 *a, i64 la, const u32 *b, i64 lb)
{
    if (la == 0 || lb == 0)
        return la == lb ? 1.0 : 0.0;
    i64 i = 0, j = 0, inter = 0;
    while (i < la && j < lb) {               /* a merge walk over the two sorted sets */
        if (a[i] < b[j])
            i++;
        else if (a[i] > b[j])
            j++;
        else {
            inter++;
            i++;
            j++;
        }
    }
    return (double)inter / (double)(la + lb - inter);
}

static PyObject *py_jaccard(PyObject *self, PyObject *args)
{
    Args a;
    if (parse(args, "r4r4", &a, "jaccard"))
        return NULL;
    double j = jaccard(BUF(0, u32), LEN(0), BUF(1, u32), LEN(1));
    release(&a);
    return PyFloat_FromDouble(j);
}

/* ---- the own-part check (verify.py's docstring states the rules) ---------------------------- */

#define CJK_PER_WORD 2         /* Chinese characters that count as one word (verify.CJK_PER_WORD) */

typedef struct {
    const u32 *set, *rank;     /* sorted set; per shingle in text order, its index in the set */
    const u8 *cut;             /* per token, 1 where a sentence ends */
    i64 n_set, m, n_tok, n;    /* set size, shingles, tokens, shingle size */
    /* filled by the check, sized n_set: index in the other text's set (-1: absent), and how
     * often, first and last where each value occurs in this text */
    i64 *in_other, *count, *first, *last;
} Side;

static inline i64 imax(i64 x, i64 y) { return x > y ? x : y; }

static inline i64 words(i64 k, i64 n)      /* k words in tokens of a text with shingle size n */
{
    return n > 1 ? k * CJK_PER_WORD : k;
}

static inline i64 tokens_of_run(i64 run, int inside, i64 n)
{
    /* a run of unshared shingles of size n inside a text: n-1 of them only straddle a shared
     * neighbour, so they cover no token of its own */
    return inside ? imax(run - (n - 1), 0) : run;
}

static void match(Side *A, Side *B)         /* merge the two sorted sets */
{
    for (i64 i = 0; i < A->n_set; i++)
        A->in_other[i] = -1;
    for (i64 j = 0; j < B->n_set; j++)
        B->in_other[j] = -1;
    i64 i = 0, j = 0;
    while (i < A->n_set && j < B->n_set) {
        if (A->set[i] < B->set[j])
            i++;
        else if (A->set[i] > B->set[j])
            j++;
        else {
            A->in_other[i] = j;
            B->in_other[j] = i;
            i++;
            j++;
        }
    }
}

static void occurrences(Side *S)
{
    for (i64 u = 0; u < S->n_set; u++) {
        S->count[u] = 0;
        S->first[u] = S->last[u] = -1;
    }
    for (i64 i = 0; i < S->m; i++) {
        u32 r = S->rank[i];
        S->count[r]++;
        if (S->first[r] < 0)
            S->first[r] = i;
        S->last[r] = i;
    }
}

/* From A's position j walking by step: the nearest shared shingle that occurs once in each
 * text; its position in A and in B, or -2 for both if there is none. */
static void anchor(const Side *A, const Side *B, i64 j, i64 step, i64 *at_a, i64 *at_b)
{
    for (; 0 <= j && j < A->m; j += step) {
        u32 u = A->rank[j];
        i64 v = A->in_other[u];
        if (v >= 0 && A->count[u] == 1 && B->count[v] == 1) {
            *at_a = j;
            *at_b = B->first[v];
            return;
        }
    }
    *at_a = *at_b = -2;
}

/* Does A have a sentence of its own: one with more than half of its tokens, and at least
 * min_tokens, covered by no shingle B has? */
static int own_sentence(const Side *A, i64 min_tokens)
{
    if (A->m == 0)
        return 0;
    i64 width = A->n_tok - A->m + 1;          /* tokens per shingle (all of a short text) */
    i64 covered_until = -1, start = 0, covered = 0;
    for (i64 t = 0; t < A->n_tok; t++) {
        if (t < A->m && A->in_other[A->rank[t]] >= 0)   /* the shingle at t covers t..t+width-1 */
            covered_until = t + width - 1;
        if (covered_until >= t)
            covered++;
        if (A->cut[t]) {
            i64 size = t + 1 - start;
            if (2 * covered < size && size - covered >= min_tokens)
                return 1;
            start = t + 1;
            covered = 0;
        }
    }
    return 0;
}

/* Longest part of B's own (tokens) in B's shingles lo..hi-1, against the values of A marked in
 * mark (what A says between the same anchors); B's shingles lo-1 and hi are anchors. */
static i64 own_in_region(const Side *B, const u8 *mark, i64 lo, i64 hi)
{
    i64 best = 0, prev = lo - 1;
    for (i64 i = lo; i <= hi; i++) {
        if (i < hi) {
            i64 u = B->in_other[B->rank[i]];
            if (u < 0 || !mark[u])
                continue;
        }
        i64 run = i - prev - 1;
        if (run > 0)
            best = imax(best, tokens_of_run(run, prev >= 0 && i < B->m, B->n));
        prev = i;
    }
    return best;
}

/* Parts of A of its own: runs of A's shingles (text order) that B lacks, in tokens.  Sets the
 * longest and the longest at a start or end; returns "replaced": some part of at least short_min
 * tokens stands where B has a part of its own of at least long_min tokens -- "where" = between
 * the same anchors, the nearest shared shingles that occur once in each text (or the texts'
 * starts / ends), so a common word or a repeated sentence cannot misplace it.  mark: all zero,
 * as long as A's set; left all zero. */
static int own_parts(const Side *A, const Side *B, i64 short_min, i64 long_min, u8 *mark,
                     i64 *longest, i64 *at_end)
{
    i64 m = A->m, prev = -1;
    int replaced = 0;
    *longest = *at_end = 0;
    for (i64 i = 0; i <= m; i++) {
        if (i < m && A->in_other[A->rank[i]] < 0)
            continue;
        i64 run = i - prev - 1;
        if (run > 0) {
            int inside = prev >= 0 && i < m;
            i64 u = tokens_of_run(run, inside, A->n);
            *longest = imax(*longest, u);
            if (!inside)
                *at_end = imax(*at_end, u);
            if (long_min > 0 && u >= short_min && !replaced) {
                i64 a_lo = -1, left = -1, a_hi = m, right = B->m;
                if (prev >= 0)
                    anchor(A, B, prev, -1, &a_lo, &left);
                if (i < m)
                    anchor(A, B, i, 1, &a_hi, &right);
                if (a_lo == -2)               /* no anchor before it: the region runs from the starts */
                    a_lo = left = -1;
                if (a_hi == -2)               /* ... after it: to the ends */
                    a_hi = m, right = B->m;
                if (right > left + 1) {
                    for (i64 k = a_lo + 1; k < a_hi; k++)
                        mark[A->rank[k]] = 1;
                    replaced = own_in_region(B, mark, left + 1, right) >= long_min;
                    for (i64 k = a_lo + 1; k < a_hi; k++)
                        mark[A->rank[k]] = 0;
                }
            }
        }
        prev = i;
    }
    return replaced;
}

static int bare(const Side *B, i64 lo, i64 hi)   /* has B nothing of its own in shingles lo..hi-1? */
{
    for (i64 i = lo; i < hi; i++)
        if (B->in_other[B->rank[i]] < 0)
            return 0;
    return 1;
}

/* A's parts of its own at its start and at its end, in tokens: the run of shingles B lacks
 * before A's first shared shingle (after its last).  Where B has nothing of its own before
 * (after) the anchor nearest that edge, the part runs on to that anchor over shared shingles
 * that B has only on the anchor's other side: such a shingle is out of place (a common word of
 * A's own heading or closing line that B uses in the passage both share), not shared text. */
static void edge_parts(const Side *A, const Side *B, i64 *start, i64 *end)
{
    i64 m = A->m, ja, jb, ka, kb;
    anchor(A, B, 0, 1, &ja, &jb);
    anchor(A, B, m - 1, -1, &ka, &kb);
    int bare_start = ja >= 0 && bare(B, 0, jb);
    int bare_end = ka >= 0 && bare(B, kb + 1, B->m);
    i64 s = 0, e = 0;
    for (; s < m; s++) {
        i64 v = A->in_other[A->rank[s]];
        if (v >= 0 && (!bare_start || s >= ja || B->first[v] < jb))
            break;
    }
    for (; e < m; e++) {
        i64 v = A->in_other[A->rank[m - 1 - e]];
        if (v >= 0 && (!bare_end || m - 1 - e <= ka || B->last[v] > kb))
            break;
    }
    *start = s;
    *end = e;
}

static inline int framed(i64 start, i64 end, i64 min_tokens)
{
    return start > 0 && end > 0 && start + end >= min_tokens;  /* own parts at both ends */
}

/* The own-part check for one field of a pair; rule = (sentence, ends, short, long, anywhere)
 * in words (verify.own_rule). */
static int different(Side *A, Side *B, const i64 *rule, u8 *mark)
{
    i64 sentence = rule[0], ends = rule[1], shrt = rule[2], lng = rule[3], anywhere = rule[4];
    match(A, B);
    if (sentence > 0 && own_sentence(A, words(sentence, A->n)) && own_sentence(B, words(sentence, B->n)))
        return 1;
    occurrences(A);
    occurrences(B);
    i64 la, ea, lb, eb, sa, za, sb, zb;
    if (own_parts(A, B, words(shrt, A->n), words(lng, B->n), mark, &la, &ea))
        return 1;
    if (own_parts(B, A, words(shrt, B->n), words(lng, A->n), mark, &lb, &eb))
        return 1;
    edge_parts(A, B, &sa, &za);
    edge_parts(B, A, &sb, &zb);
    ea = imax(ea, imax(sa, za));
    eb = imax(eb, imax(sb, zb));
    if (ends > 0 && ea >= words(ends, A->n) && eb >= words(ends, B->n))
        return 1;
    if (lng > 0 && ((framed(sa, za, words(shrt, A->n)) && imax(sb, zb) >= words(lng, B->n))
                    || (framed(sb, zb, words(shrt, B->n)) && imax(sa, za) >= words(lng, A->n))))
        return 1;
    return anywhere > 0 && la >= words(anywhere, A->n) && lb >= words(anywhere, B->n);
}

/* Scratch arrays for the check, grown to the largest set seen (one per thread). */
typedef struct {
    i64 *mem;
    u8 *mark;
    i64 cap;
} Scratch;

static int reserve(Scratch *s, Side *A, Side *B)
{
    i64 need = imax(A->n_set, B->n_set);
    if (need > s->cap) {
        i64 cap = imax(need, 2 * s->cap);
        free(s->mem);
        free(s->mark);
        s->mem = malloc((size_t)(8 * cap + 1) * sizeof(i64));
        s->mark = calloc((size_t)cap + 1, 1);
        s->cap = s->mem && s->mark ? cap : 0;
        if (!s->cap)
            return -1;
    }
    i64 *p = s->mem;
    Side *sides[2] = {A, B};
    for (int k = 0; k < 2; k++) {
        sides[k]->in_other = p, sides[k]->count = p + s->cap;
        sides[k]->first = p + 2 * s->cap, sides[k]->last = p + 3 * s->cap;
        p += 4 * s->cap;
    }
    return 0;
}

static void release_scratch(Scratch *s)
{
    free(s->mem);
    free(s->mark);
}

/* different(set_a, rank_a, cut_a, n_a, set_b, rank_b, cut_b, n_b, rule) -> bool, for one pair of
 * texts (tests and the doctests of verify.py). */
static PyObject *py_different(PyObject *self, PyObject *args)
{
    Args a;
    if (parse(args, "r4r4r1nr4r4r1nr8", &a, "different"))
        return NULL;
    Side A = {.set = BUF(0, u32), .rank = BUF(1, u32), .cut = BUF(2, u8), .n_set = LEN(0), .m = LEN(1),
              .n_tok = LEN(2), .n = a.ints[0]};
    Side B = {.set = BUF(3, u32), .rank = BUF(4, u32), .cut = BUF(5, u8), .n_set = LEN(3), .m = LEN(4),
              .n_tok = LEN(5), .n = a.ints[1]};
    Scratch s = {0};
    if (LEN(6) < 5 || reserve(&s, &A, &B)) {
        release_scratch(&s);
        release(&a);
        return LEN(6) < 5 ? PyErr_Format(PyExc_ValueError, "different: rule has 5 entries") : PyErr_NoMemory();
    }
    int split = different(&A, &B, BUF(6, i64), s.mark);
    release_scratch(&s);
    release(&a);
    return PyBool_FromLong(split);
}

/* The compact arrays of verification (verify.Spill._gather), and slot i of them as a Side. */
typedef struct {
    const u32 *vals, *rank;
    const i64 *vals_end, *start, *cut_start;
    const u8 *n, *cut;
} Compact;

static Side slot(const Compact *c, i64 i)
{
    Side S = {.set = c->vals + c->start[i], .rank = c->rank + c->start[i], .cut = c->cut + c->cut_start[i],
              .n_set = c->vals_end[i] - c->start[i], .m = c->start[i + 1] - c->start[i],
              .n_tok = c->cut_start[i + 1] - c->cut_start[i], .n = c->n[i]};
    return S;
}

/* verify(vals, vals_end, rank, start, n, cut, cut_start, local, n_docs, fields_of, ga, gb,
 *        threshold, rule, sims, split).  Pairs p = documents ga[p] ~ gb[p]; field f of document g
 * is entry e = f * n_docs + g, at slot i = local[e] of the compact arrays (verify.Spill._gather):
 * set vals[start[i]:vals_end[i]], ranks rank[start[i]:start[i+1]], sentence ends
 * cut[cut_start[i]:cut_start[i+1]], shingle size n[i].  Writes sims[p], the min over the pair's
 * fields_of[p] fields of the exact Jaccard (stopping below threshold), and for pairs that reach
 * it split[p]: whether the own-part check finds them different in some field. */
static PyObject *py_verify(PyObject *self, PyObject *args)
{
    Args a;
    if (parse(args, "r4r8r4r8r1r1r8r8nr8r8r8dr8w4w1", &a, "verify"))
        return NULL;
    Compact c = {.vals = BUF(0, u32), .vals_end = BUF(1, i64), .rank = BUF(2, u32), .start = BUF(3, i64),
                 .n = BUF(4, u8), .cut = BUF(5, u8), .cut_start = BUF(6, i64)};
    const i64 *local = BUF(7, i64), *fields_of = BUF(8, i64), *ga = BUF(9, i64), *gb = BUF(10, i64);
    const i64 *rule = BUF(11, i64);
    float *sims = BUF(12, float);
    u8 *split = BUF(13, u8);
    i64 n_docs = a.ints[0], n_pairs = LEN(9);
    double threshold = a.reals[0];
    int check = 0, failed = 0;
    if (LEN(11) < 5 || LEN(10) != n_pairs || LEN(8) != n_pairs || LEN(12) != n_pairs || LEN(13) != n_pairs) {
        release(&a);
        return PyErr_Format(PyExc_ValueError, "verify: array sizes do not match");
    }
    for (int k = 0; k < 5; k++)
        check |= rule[k] > 0;
    Scratch s = {0};
    Py_BEGIN_ALLOW_THREADS
    for (i64 p = 0; p < n_pairs && !failed; p++) {
        double sim = 1.0;
        split[p] = 0;
        for (i64 f = 0; f < fields_of[p]; f++) {
            i64 i = local[f * n_docs + ga[p]], j = local[f * n_docs + gb[p]];
            double jf = jaccard(c.vals + c.start[i], c.vals_end[i] - c.start[i], c.vals + c.start[j],
                                c.vals_end[j] - c.start[j]);
            sim = jf < sim ? jf : sim;
            if (sim < threshold)
                break;
        }
        sims[p] = (float)sim;
        if (sim < threshold || !check)
            continue;
        for (i64 f = 0; f < fields_of[p]; f++) {
            i64 i = local[f * n_docs + ga[p]], j = local[f * n_docs + gb[p]];
            Side A = slot(&c, i), B = slot(&c, j);
            if (reserve(&s, &A, &B)) {
                failed = 1;
                break;
            }
            if (different(&A, &B, rule, s.mark)) {
                split[p] = 1;
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    release_scratch(&s);
    release(&a);
    if (failed)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"utf8_decode", py_utf8_decode, METH_VARARGS, "UTF-8 texts -> code points and offsets."},
    {"heads", py_heads, METH_VARARGS, "The first code points of each document, from A or B."},
    {"scan", py_scan, METH_VARARGS, "Per document: SLOW / ASTRAL flags."},
    {"sketch", py_sketch, METH_VARARGS, "Tokens, shingle hashes, exact hashes and MinHash signatures."},
    {"band_keys", py_band_keys, METH_VARARGS, "LSH band keys of signatures."},
    {"sorted_sets_into", py_sorted_sets_into, METH_VARARGS, "Sorted shingle sets and ranks."},
    {"gather_ragged", py_gather_ragged, METH_VARARGS, "Copy ragged byte rows."},
    {"jaccard", py_jaccard, METH_VARARGS, "Exact Jaccard of two sorted uint32 sets."},
    {"different", py_different, METH_VARARGS, "The own-part check for one pair of texts."},
    {"verify", py_verify, METH_VARARGS, "Exact similarity and own-part check of candidate pairs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "Near-dedup's compiled loops (see _kernels.c).",
                                    -1, methods};

#ifndef SOURCE_DIGEST
#define SOURCE_DIGEST "unknown"
#endif

PyMODINIT_FUNC PyInit__kernels(void)
{
    PyObject *m = PyModule_Create(&module);
    /* setup.py builds in this file's digest: kernels.py compares it with the file beside it */
    if (m && PyModule_AddStringConstant(m, "SOURCE_DIGEST", SOURCE_DIGEST) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
