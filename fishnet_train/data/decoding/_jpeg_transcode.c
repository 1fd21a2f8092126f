/* A JPEG rewritten with a restart marker after every MCU, losslessly.
 *
 * The DCT coefficients are copied as they are (the pixels stay the same bit for bit), into one
 * sequential scan with Huffman tables made for the file: progressive files become sequential, and
 * the tables usually save more than the markers cost. The file's APPn and COM markers are kept.
 */
#include <stdlib.h>
#include <string.h>

#include "_jpeg_errors.h"
#include "_jpeg_transcode.h"

static int is_marker_the_encoder_writes(j_compress_ptr out, jpeg_saved_marker_ptr m)
{
    if (out->write_JFIF_header && m->marker == JPEG_APP0 && m->data_length >= 5 &&
        memcmp(m->data, "JFIF", 5) == 0)
        return 1;
    return out->write_Adobe_marker && m->marker == JPEG_APP0 + 14 && m->data_length >= 5 &&
           memcmp(m->data, "Adobe", 5) == 0;
}

static void copy_markers(j_decompress_ptr in, j_compress_ptr out)
{
    jpeg_saved_marker_ptr m;
    for (m = in->marker_list; m != NULL; m = m->next)
        if (!is_marker_the_encoder_writes(out, m))
            jpeg_write_marker(out, m->marker, m->data, m->data_length);
}

int add_restart_markers(const unsigned char *src, size_t size, unsigned char **out, unsigned long *out_size,
                        char *message)
{
    struct jpeg_decompress_struct in;
    struct jpeg_compress_struct enc;
    ErrorManager err;
    jvirt_barray_ptr *coefficients;
    int i;

    /* Zeroed, so that destroying one that was never created does nothing. */
    memset(&in, 0, sizeof(in));
    memset(&enc, 0, sizeof(enc));
    *out = NULL;
    *out_size = 0;
    in.err = enc.err = strict_errors(&err);
    if (setjmp(err.escape)) {
        memcpy(message, err.message, JMSG_LENGTH_MAX);
        jpeg_destroy_compress(&enc);
        jpeg_destroy_decompress(&in);
        free(*out);
        *out = NULL;
        return -1;
    }
    jpeg_create_decompress(&in);
    jpeg_create_compress(&enc);
    jpeg_mem_src(&in, src, (unsigned long)size);
    jpeg_save_markers(&in, JPEG_COM, 0xFFFF);
    for (i = 0; i < 16; i++)
        jpeg_save_markers(&in, JPEG_APP0 + i, 0xFFFF);
    jpeg_read_header(&in, TRUE);
    coefficients = jpeg_read_coefficients(&in);
    jpeg_copy_critical_parameters(&in, &enc);
    enc.restart_interval = 1;
    enc.optimize_coding = TRUE;
    jpeg_mem_dest(&enc, out, out_size);
    jpeg_write_coefficients(&enc, coefficients);
    copy_markers(&in, &enc);
    jpeg_finish_compress(&enc);
    jpeg_finish_decompress(&in);
    jpeg_destroy_compress(&enc);
    jpeg_destroy_decompress(&in);
    return 0;
}
