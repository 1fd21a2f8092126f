/* libjpeg's errors, and its warnings about corrupt data, as a longjmp with the message kept. */
#ifndef FISHNET_JPEG_ERRORS_H
#define FISHNET_JPEG_ERRORS_H

#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
} ErrorManager;

static void raise_error(j_common_ptr cinfo)
{
    ErrorManager *err = (ErrorManager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->escape, 1);
}

static void on_message(j_common_ptr cinfo, int level)
{
    if (level < 0) /* a warning: the data is corrupt, which the caller must not take for pixels */
        raise_error(cinfo);
}

/* libjpeg's standard manager, raising through err->escape (set it with setjmp before any libjpeg call). */
static struct jpeg_error_mgr *strict_errors(ErrorManager *err)
{
    struct jpeg_error_mgr *pub = jpeg_std_error(&err->pub);
    pub->error_exit = raise_error;
    pub->emit_message = on_message;
    return pub;
}

#endif
