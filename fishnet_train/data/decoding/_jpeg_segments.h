/* A box of a JPEG with a restart marker after every MCU, cut out as a JPEG of its own (_jpeg_segments.c). */
#ifndef FISHNET_JPEG_SEGMENTS_H
#define FISHNET_JPEG_SEGMENTS_H

#include <stddef.h>

typedef struct {
    size_t frame;                  /* offset of the frame header's marker */
    size_t entropy;                /* offset of the scan's first byte of data */
    unsigned width, height;        /* the image, in pixels */
    unsigned components;
    unsigned mcu_width, mcu_height; /* in pixels */
    unsigned mcus_per_row, mcu_rows;
} SegmentLayout;

/* 1 for an 8-bit Huffman sequential JPEG of one scan with a restart marker after every MCU (the
 * layout filled in), else 0: the file is decoded some other way. */
int segment_layout(const unsigned char *src, size_t size, SegmentLayout *layout);

/* The JPEG of MCU columns [c0, c1) of MCU rows [r0, r1) (malloc'd, its size in *out_size); NULL where
 * the data does not hold those MCUs, each closed by its restart marker in sequence, or memory ran out. */
unsigned char *cut_segments(const unsigned char *src, size_t size, const SegmentLayout *layout, unsigned c0,
                            unsigned c1, unsigned r0, unsigned r1, size_t *out_size);

#endif
