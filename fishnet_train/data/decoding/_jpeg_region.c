/* Decoding one rectangle of a JPEG with libjpeg-turbo's libjpeg API.
 *
 * A file with a restart marker after every MCU (what add_restart_markers writes) is first cut down to
 * the MCUs around the rectangle (_jpeg_segments.c), so nothing outside them is even entropy-decoded.
 * In any other file, rows above the rectangle are entropy-decoded but not transformed
 * (jpeg_skip_scanlines), rows below it are never read, and columns outside it are not transformed
 * (jpeg_crop_scanline, which widens the columns to whole iMCUs). Both exist since libjpeg-turbo 1.5.
 * A warning about corrupt data is an error here, so that the caller falls back to the whole-image
 * decoder, which refuses the same files.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "_jpeg_errors.h"
#include "_jpeg_segments.h"
#include "_jpeg_transcode.h"

#define ROWS_PER_READ 16
/* Columns decoded beyond each side of the box. Fancy chroma upsampling reads the neighbouring chroma
 * sample: decoded alone, a box whose edge lies on an iMCU boundary would be upsampled as if it were the
 * image's edge. One more column makes the box equal to the same box of the whole decoded image. */
#define CONTEXT 1

typedef struct {
    JDIMENSION left, top, width, height; /* the box, in the scaled image */
    unsigned int num, denom;             /* DCT-domain scaling: num/denom */
    int fast;                            /* fast integer IDCT and plain chroma upsampling */
    unsigned char *scratch;              /* decoded rows: the box's columns widened to whole iMCUs */
} Region;

static void fail(j_decompress_ptr cinfo, const char *message)
{
    ErrorManager *err = (ErrorManager *)cinfo->err;
    snprintf(err->message, sizeof(err->message), "%s", message);
    longjmp(err->escape, 1);
}

/* The box's rows, decoded ROWS_PER_READ at a time into r->scratch, its columns copied to dst. */
static void read_box(j_decompress_ptr cinfo, Region *r, JDIMENSION decoded_left, unsigned char *dst)
{
    JSAMPROW rows[ROWS_PER_READ];
    JDIMENSION end = r->top + r->height, stride = cinfo->output_width * 3, i;
    size_t offset = (size_t)(r->left - decoded_left) * 3, box_stride = (size_t)r->width * 3;

    r->scratch = malloc((size_t)ROWS_PER_READ * stride);
    if (r->scratch == NULL)
        fail(cinfo, "out of memory");
    for (i = 0; i < ROWS_PER_READ; i++)
        rows[i] = r->scratch + (size_t)i * stride;
    while (cinfo->output_scanline < end) {
        JDIMENSION first = cinfo->output_scanline, n = end - first;
        if (n > ROWS_PER_READ)
            n = ROWS_PER_READ;
        n = jpeg_read_scanlines(cinfo, rows, n);
        if (n == 0)
            fail(cinfo, "the data ended before the box");
        for (i = 0; i < n; i++)
            memcpy(dst + (size_t)(first - r->top + i) * box_stride, rows[i] + offset, box_stride);
    }
}

/* Decodes r's box into dst (height rows of width RGB pixels); 0, or -1 with message set. */
static int decode_into(const unsigned char *src, size_t size, Region *r, unsigned char *dst,
                       size_t capacity, char *message)
{
    struct jpeg_decompress_struct cinfo;
    ErrorManager err;
    JDIMENSION decoded_left, decoded_width;

    r->scratch = NULL;
    cinfo.err = strict_errors(&err);
    if (setjmp(err.escape)) {
        memcpy(message, err.message, JMSG_LENGTH_MAX);
        jpeg_destroy_decompress(&cinfo);
        free(r->scratch);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, src, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    cinfo.scale_num = r->num;
    cinfo.scale_denom = r->denom;
    cinfo.dct_method = r->fast ? JDCT_IFAST : JDCT_ISLOW;
    cinfo.do_fancy_upsampling = r->fast ? FALSE : TRUE;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3)
        fail(&cinfo, "not decoded to 3 components");
    if (r->width == 0 || r->height == 0 || r->left + r->width > cinfo.output_width ||
        r->top + r->height > cinfo.output_height)
        fail(&cinfo, "the box is not inside the image");
    if ((size_t)r->height * r->width * 3 > capacity)
        fail(&cinfo, "the output buffer is too small");
    decoded_left = r->left > CONTEXT ? r->left - CONTEXT : 0;
    decoded_width = r->left + r->width + CONTEXT < cinfo.output_width ? r->left + r->width + CONTEXT - decoded_left
                                                                       : cinfo.output_width - decoded_left;
    jpeg_crop_scanline(&cinfo, &decoded_left, &decoded_width); /* widened to whole iMCUs */
    if (r->top > 0 && jpeg_skip_scanlines(&cinfo, r->top) != r->top)
        fail(&cinfo, "the data ended before the box");
    read_box(&cinfo, r, decoded_left, dst);
    /* Not jpeg_finish_decompress: that would decode the rows below the box. */
    jpeg_destroy_decompress(&cinfo);
    free(r->scratch);
    return 0;
}

static unsigned scaled_size(unsigned size, const Region *r)
{
    return (unsigned)(((unsigned long)size * r->num + r->denom - 1) / r->denom);
}

/* Decodes r's box from the MCUs around it where the file has a restart marker after every MCU: 0, or -1
 * with message set, or 1 where the file is not cut this way. One pixel of context on each side of the box
 * (CONTEXT's reason) takes in the neighbouring MCU only where the box starts or ends on an MCU's edge. */
static int decode_cut(const unsigned char *src, size_t size, Region *r, unsigned char *dst, size_t capacity,
                      char *message)
{
    SegmentLayout l;
    Region shifted = *r;
    unsigned mw, mh, c0, c1, r0, r1;
    unsigned char *cut;
    size_t cut_size;
    int status;

    if (!segment_layout(src, size, &l) || l.mcu_width * r->num % r->denom || l.mcu_height * r->num % r->denom)
        return 1;
    mw = l.mcu_width * r->num / r->denom;
    mh = l.mcu_height * r->num / r->denom;
    if (r->width == 0 || r->height == 0 || r->left + r->width > scaled_size(l.width, r) ||
        r->top + r->height > scaled_size(l.height, r))
        return 1; /* refused by decode_into, with its message */
    c0 = r->left > 0 ? (r->left - 1) / mw : 0;
    r0 = r->top > 0 ? (r->top - 1) / mh : 0;
    c1 = (r->left + r->width) / mw + 1;
    r1 = (r->top + r->height) / mh + 1;
    c1 = c1 < l.mcus_per_row ? c1 : l.mcus_per_row;
    r1 = r1 < l.mcu_rows ? r1 : l.mcu_rows;
    /* libjpeg upsamples chroma at most 2 samples wide without interpolation: never cut one so narrow. */
    if (c1 - c0 < 2 && c0 > 0)
        c0--;
    else if (c1 - c0 < 2 && c1 < l.mcus_per_row)
        c1++;
    cut = cut_segments(src, size, &l, c0, c1, r0, r1, &cut_size);
    if (cut == NULL)
        return 1;
    shifted.left -= c0 * mw;
    shifted.top -= r0 * mh;
    status = decode_into(cut, cut_size, &shifted, dst, capacity, message);
    free(cut);
    return status;
}

PyDoc_STRVAR(decode_box_doc,
"decode_box(data, out, left, top, width, height, num, denom, fast)\n\n"
"Decode the box (left, top, width, height) of the JPEG in data, scaled by num/denom in the DCT\n"
"domain, into the writable buffer out as height rows of width RGB pixels. Raises ValueError for a\n"
"file libjpeg refuses or warns about.");

static PyObject *decode_box(PyObject *self, PyObject *args)
{
    Py_buffer data, out;
    Region r;
    char message[JMSG_LENGTH_MAX];
    int status;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*IIIIIIp", &data, &out, &r.left, &r.top, &r.width, &r.height,
                          &r.num, &r.denom, &r.fast))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    status = decode_cut(data.buf, (size_t)data.len, &r, out.buf, (size_t)out.len, message);
    if (status == 1)
        status = decode_into(data.buf, (size_t)data.len, &r, out.buf, (size_t)out.len, message);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (status != 0) {
        PyErr_SetString(PyExc_ValueError, message);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(restart_markers_doc,
"add_restart_markers(data) -> bytes\n\n"
"The JPEG in data rewritten losslessly (the same DCT coefficients, so the same pixels) as one\n"
"sequential scan with a restart marker after every MCU and Huffman tables made for it, its APPn and\n"
"COM markers kept. Raises ValueError for a file libjpeg refuses or warns about.");

static PyObject *restart_markers(PyObject *self, PyObject *args)
{
    Py_buffer data;
    unsigned char *out;
    unsigned long out_size;
    char message[JMSG_LENGTH_MAX];
    int status;
    PyObject *result;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    status = add_restart_markers(data.buf, (size_t)data.len, &out, &out_size, message);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (status != 0) {
        PyErr_SetString(PyExc_ValueError, message);
        return NULL;
    }
    result = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)out_size);
    free(out);
    return result;
}

PyDoc_STRVAR(cuttable_doc,
"has_mcu_restarts(data) -> bool\n\n"
"Whether the JPEG in data is one sequential Huffman scan with a restart marker after every MCU, as\n"
"add_restart_markers writes it: decode_box then reads only the MCUs around the box. Only the headers\n"
"are looked at.");

static PyObject *has_mcu_restarts(PyObject *self, PyObject *args)
{
    Py_buffer data;
    SegmentLayout l;
    int cuttable;

    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    cuttable = segment_layout(data.buf, (size_t)data.len, &l);
    PyBuffer_Release(&data);
    return PyBool_FromLong(cuttable);
}

static PyMethodDef methods[] = {
    {"has_mcu_restarts", has_mcu_restarts, METH_VARARGS, cuttable_doc},
    {"decode_box", decode_box, METH_VARARGS, decode_box_doc},
    {"add_restart_markers", restart_markers, METH_VARARGS, restart_markers_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpeg_region", "A box of a JPEG, decoded with libjpeg-turbo.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jpeg_region(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "LIBJPEG_TURBO_VERSION_NUMBER",
#ifdef LIBJPEG_TURBO_VERSION_NUMBER
                                             LIBJPEG_TURBO_VERSION_NUMBER
#else
                                             0
#endif
                                             ) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
