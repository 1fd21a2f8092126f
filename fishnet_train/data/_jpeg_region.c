/* Decoding one rectangle of a JPEG with libjpeg-turbo's libjpeg API.
 *
 * Rows above the rectangle are entropy-decoded but not transformed (jpeg_skip_scanlines), rows
 * below it are never read, and columns outside it are not transformed (jpeg_crop_scanline, which
 * widens the columns to whole iMCUs). Both exist since libjpeg-turbo 1.5. A warning about corrupt
 * data is an error here, so that the caller falls back to the whole-image decoder, which refuses
 * the same files.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#define ROWS_PER_READ 16
/* Columns decoded beyond each side of the box. Fancy chroma upsampling reads the neighbouring chroma
 * sample: decoded alone, a box whose edge lies on an iMCU boundary would be upsampled as if it were the
 * image's edge. One more column makes the box equal to the same box of the whole decoded image. */
#define CONTEXT 1

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
} ErrorManager;

typedef struct {
    JDIMENSION left, top, width, height; /* the box, in the scaled image */
    unsigned int num, denom;             /* DCT-domain scaling: num/denom */
    int fast;                            /* fast integer IDCT and plain chroma upsampling */
    unsigned char *scratch;              /* decoded rows: the box's columns widened to whole iMCUs */
} Region;

static void raise_error(j_common_ptr cinfo)
{
    ErrorManager *err = (ErrorManager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->escape, 1);
}

static void on_message(j_common_ptr cinfo, int level)
{
    if (level < 0) /* a warning: the data is corrupt */
        raise_error(cinfo);
}

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
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = raise_error;
    err.pub.emit_message = on_message;
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

static PyMethodDef methods[] = {
    {"decode_box", decode_box, METH_VARARGS, decode_box_doc},
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
