/* A box of a JPEG that has a restart marker after every MCU, cut out as a JPEG of its own.
 *
 * At a restart marker the entropy decoder starts afresh (DC predictions reset, byte-aligned data),
 * so the data of each MCU can be decoded on its own. The JPEG made here has the file's tables, a
 * frame of the box's MCUs, and only those MCUs' data with their markers renumbered: the decoder
 * entropy-decodes nothing outside the box, where without markers it must decode every row above.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_jpeg_segments.h"

#define MARKER_SOF0 0xC0
#define MARKER_SOF1 0xC1
#define MARKER_DHT 0xC4
#define MARKER_RST0 0xD0
#define MARKER_EOI 0xD9
#define MARKER_SOS 0xDA
#define MARKER_DRI 0xDD

static unsigned read16(const unsigned char *p)
{
    return ((unsigned)p[0] << 8) | p[1];
}

static int is_frame_marker(int m)
{
    return m >= 0xC0 && m <= 0xCF && m != MARKER_DHT && m != 0xC8 && m != 0xCC;
}

/* Reads the frame's sampling factors into the layout; 0 where the frame is not one this cuts. */
static int read_frame(const unsigned char *p, size_t length, SegmentLayout *l)
{
    unsigned components, i, hmax = 1, vmax = 1;

    if (length < 8 || p[0] != 8) /* 8-bit samples */
        return 0;
    l->height = read16(p + 1);
    l->width = read16(p + 3);
    components = p[5];
    if (l->height == 0 || l->width == 0 || components == 0 || length < 6 + 3 * components)
        return 0;
    for (i = 0; i < components; i++) {
        unsigned h = p[6 + 3 * i + 1] >> 4, v = p[6 + 3 * i + 1] & 15;
        hmax = h > hmax ? h : hmax;
        vmax = v > vmax ? v : vmax;
    }
    /* One component is a scan of single blocks, whatever its sampling factors say. */
    l->mcu_width = components == 1 ? 8 : 8 * hmax;
    l->mcu_height = components == 1 ? 8 : 8 * vmax;
    l->components = components;
    return 1;
}

int segment_layout(const unsigned char *src, size_t size, SegmentLayout *l)
{
    size_t pos = 2;
    int have_frame = 0, interval = 0;

    if (size < 4 || src[0] != 0xFF || src[1] != 0xD8)
        return 0;
    while (pos + 4 <= size) {
        int m;
        size_t length;
        if (src[pos] != 0xFF)
            return 0;
        m = src[pos + 1];
        if (m == 0xFF) { /* fill byte */
            pos++;
            continue;
        }
        if (m == 0x01 || (m >= MARKER_RST0 && m <= 0xD8)) {
            pos += 2;
            continue;
        }
        if (m == MARKER_EOI)
            return 0;
        length = read16(src + pos + 2);
        if (length < 2 || pos + 2 + length > size)
            return 0;
        if (is_frame_marker(m)) {
            /* Only Huffman sequential frames: progressive scans and arithmetic coding take the other way. */
            if ((m != MARKER_SOF0 && m != MARKER_SOF1) || have_frame || !read_frame(src + pos + 4, length - 2, l))
                return 0;
            l->frame = pos;
            have_frame = 1;
        } else if (m == MARKER_DRI) {
            interval = length >= 4 ? (int)read16(src + pos + 4) : 0;
        } else if (m == MARKER_SOS) {
            /* One scan holding every component: each MCU has all of its pixels' data. */
            if (!have_frame || interval != 1 || length < 3 || src[pos + 4] != l->components)
                return 0;
            l->entropy = pos + 2 + length;
            l->mcus_per_row = (l->width + l->mcu_width - 1) / l->mcu_width;
            l->mcu_rows = (l->height + l->mcu_height - 1) / l->mcu_height;
            return 1;
        }
        pos += 2 + length;
    }
    return 0;
}

/* Finds the data of MCUs first .. end - 1, reading from the first MCU of the scan: starts[i - first] to
 * ends[i - first]; 0 unless every MCU up to end is there, each followed by the next restart marker in
 * sequence (the last MCU of the image by the end of image). */
static int find_segments(const unsigned char *src, size_t size, const SegmentLayout *l, size_t first, size_t end,
                         size_t *starts, size_t *ends)
{
    size_t total = (size_t)l->mcus_per_row * l->mcu_rows, i, pos = l->entropy;

    for (i = 0; i < end; i++) {
        const unsigned char *q;
        size_t start = pos, data_end;
        int m;
        for (;;) {
            q = memchr(src + pos, 0xFF, size - pos);
            if (q == NULL)
                return 0;
            data_end = (size_t)(q - src);
            pos = data_end + 1;
            while (pos < size && src[pos] == 0xFF) /* fill bytes before a marker */
                pos++;
            if (pos >= size)
                return 0;
            if (src[pos] != 0x00) /* not a stuffed zero: a marker */
                break;
            pos++;
        }
        m = src[pos++];
        if (i + 1 == total ? m != MARKER_EOI : m != MARKER_RST0 + (int)(i % 8))
            return 0;
        if (i >= first) {
            starts[i - first] = start;
            ends[i - first] = data_end;
        }
    }
    return 1;
}

unsigned char *cut_segments(const unsigned char *src, size_t size, const SegmentLayout *l, unsigned c0,
                            unsigned c1, unsigned r0, unsigned r1, size_t *out_size)
{
    size_t first = (size_t)r0 * l->mcus_per_row, count = (size_t)(r1 - r0) * l->mcus_per_row;
    size_t *starts = malloc(2 * count * sizeof(size_t)), *ends = starts + count, length = l->entropy + 2;
    size_t emitted = 0, at;
    unsigned char *out = NULL;
    unsigned r, c, width, height;

    if (starts == NULL || !find_segments(src, size, l, first, first + count, starts, ends))
        goto done;
    for (r = 0; r < r1 - r0; r++)
        for (c = c0; c < c1; c++)
            length += ends[r * l->mcus_per_row + c] - starts[r * l->mcus_per_row + c] + 2;
    out = malloc(length);
    if (out == NULL)
        goto done;
    memcpy(out, src, l->entropy);
    /* The frame of the cut: the image's edge stays where the cut reaches it, so partial MCUs stay partial. */
    width = (c1 == l->mcus_per_row ? l->width : c1 * l->mcu_width) - c0 * l->mcu_width;
    height = (r1 == l->mcu_rows ? l->height : r1 * l->mcu_height) - r0 * l->mcu_height;
    out[l->frame + 5] = (unsigned char)(height >> 8);
    out[l->frame + 6] = (unsigned char)height;
    out[l->frame + 7] = (unsigned char)(width >> 8);
    out[l->frame + 8] = (unsigned char)width;
    at = l->entropy;
    for (r = 0; r < r1 - r0; r++) {
        for (c = c0; c < c1; c++, emitted++) {
            size_t i = (size_t)r * l->mcus_per_row + c;
            if (emitted > 0) { /* the decoder expects RST0, RST1, ... from the start of its scan */
                out[at++] = 0xFF;
                out[at++] = (unsigned char)(MARKER_RST0 + (emitted - 1) % 8);
            }
            memcpy(out + at, src + starts[i], ends[i] - starts[i]);
            at += ends[i] - starts[i];
        }
    }
    out[at++] = 0xFF;
    out[at++] = MARKER_EOI;
    *out_size = at;
done:
    free(starts);
    return out;
}
