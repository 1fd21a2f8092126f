/* A JPEG rewritten losslessly with a restart marker after every MCU (_jpeg_transcode.c). */
#ifndef FISHNET_JPEG_TRANSCODE_H
#define FISHNET_JPEG_TRANSCODE_H

#include <stddef.h>

#include <jpeglib.h>

/* 0 with *out (malloc'd) and *out_size set, or -1 with message set (JMSG_LENGTH_MAX bytes). */
int add_restart_markers(const unsigned char *src, size_t size, unsigned char **out, unsigned long *out_size,
                        char *message);

#endif
