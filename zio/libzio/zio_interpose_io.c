/*
 * Interposed IO calls.  Input calls record originals, output calls send
 * originals in place of intermediates with gather IO (see zio_io.c).  The
 * input site (the caller's return address) is the policy key.
 *
 * _FILE_OFFSET_BITS is dropped so that pread/pwrite and their *64 twins are
 * two distinct symbols here (on x86_64 both take a 64-bit off_t).
 */
#undef _FILE_OFFSET_BITS
#include "zio_internal.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define KEY ((uintptr_t)__builtin_return_address(0))
#define REAL(name) \
    static __typeof__(name) *real_##name; \
    if (!real_##name) real_##name = zio_next(#name)

static inline int active(void)
{
    return zio_mode != ZIO_OFF && !zio_in_lib;
}

/* one-buffer input: make the buffer plain, call, record what arrived */
#define INPUT1(fd, buf, n, call) do { \
        if (!active()) return call; \
        io_before_input(buf, n, io_stack_placed(fd)); \
        zio_stack_input = 0; \
        ssize_t r_ = call; \
        if (r_ > 0) \
            io_note_placed(fd, zio_stack_input); \
        /* MSG_TRUNC may report more than fits the buffer */ \
        if (!zio_stack_input) \
            io_after_input(buf, r_ > (ssize_t)(n) ? (ssize_t)(n) : r_, KEY); \
        return r_; \
    } while (0)

#define INPUTV(fd, iov, cnt, call) do { \
        if (!active()) return call; \
        io_before_inputv(iov, cnt, io_stack_placed(fd)); \
        zio_stack_input = 0; \
        ssize_t r_ = call; \
        if (r_ > 0) \
            io_note_placed(fd, zio_stack_input); \
        if (!zio_stack_input) \
            io_after_inputv(iov, cnt, r_, KEY); \
        return r_; \
    } while (0)

/* output: the program's own call unless the buffers hold intermediates */
#define OUTPUT(in, cnt, plain, ...) do { \
        ssize_t r_; \
        if (io_output_tracked(in, cnt)) { \
            struct zio_out how_ = { __VA_ARGS__ }; \
            if (io_output(&how_, in, cnt, &r_)) \
                return r_; \
        } \
        return plain; \
    } while (0)

ZIO_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    REAL(read);
    INPUT1(fd, buf, n, real_read(fd, buf, n));
}

ZIO_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    REAL(recv);
    INPUT1(fd, buf, n, real_recv(fd, buf, n, flags));
}

ZIO_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags,
                            struct sockaddr *addr, socklen_t *alen)
{
    REAL(recvfrom);
    INPUT1(fd, buf, n, real_recvfrom(fd, buf, n, flags, addr, alen));
}

ZIO_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    REAL(pread);
    INPUT1(fd, buf, n, real_pread(fd, buf, n, off));
}

ZIO_EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
    REAL(pread64);
    INPUT1(fd, buf, n, real_pread64(fd, buf, n, off));
}

ZIO_EXPORT ssize_t readv(int fd, const struct iovec *v, int cnt)
{
    REAL(readv);
    INPUTV(fd, v, cnt, real_readv(fd, v, cnt));
}

ZIO_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
    REAL(recvmsg);
    INPUTV(fd, m->msg_iov, (int)m->msg_iovlen, real_recvmsg(fd, m, flags));
}

ZIO_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t blen)
{
    REAL(__read_chk);
    INPUT1(fd, buf, n, real___read_chk(fd, buf, n, blen));
}

ZIO_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t blen, int flags)
{
    REAL(__recv_chk);
    INPUT1(fd, buf, n, real___recv_chk(fd, buf, n, blen, flags));
}

ZIO_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(write);
    struct iovec one = { (void *)buf, n };
    OUTPUT(&one, 1, real_write(fd, buf, n), .kind = OUT_WRITE, .fd = fd,
           .file_path = PATH_WRITE_WRITEV, .sock_path = PATH_WRITE_SENDMSG);
}

ZIO_EXPORT ssize_t writev(int fd, const struct iovec *v, int cnt)
{
    REAL(writev);
    OUTPUT(v, cnt, real_writev(fd, v, cnt), .kind = OUT_WRITE, .fd = fd,
           .file_path = PATH_SAME, .sock_path = PATH_WRITEV_SENDMSG);
}

ZIO_EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite);
    struct iovec one = { (void *)buf, n };
    OUTPUT(&one, 1, real_pwrite(fd, buf, n, off), .kind = OUT_PWRITE, .fd = fd, .off = off,
           .file_path = PATH_PWRITE_PWRITEV);
}

ZIO_EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite64);
    struct iovec one = { (void *)buf, n };
    OUTPUT(&one, 1, real_pwrite64(fd, buf, n, off), .kind = OUT_PWRITE, .fd = fd, .off = off,
           .file_path = PATH_PWRITE64_PWRITEV);
}

ZIO_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    REAL(send);
    struct iovec one = { (void *)buf, n };
    OUTPUT(&one, 1, real_send(fd, buf, n, flags), .kind = OUT_SEND, .fd = fd, .flags = flags,
           .sock_path = PATH_SEND_SENDMSG);
}

ZIO_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags,
                          const struct sockaddr *to, socklen_t tolen)
{
    REAL(sendto);
    struct iovec one = { (void *)buf, n };
    struct msghdr m = { .msg_name = (void *)to, .msg_namelen = tolen };
    OUTPUT(&one, 1, real_sendto(fd, buf, n, flags, to, tolen),
           .kind = OUT_SEND, .fd = fd, .flags = flags, .msg = &m, .sock_path = PATH_SENDTO_SENDMSG);
}

ZIO_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
    REAL(sendmsg);
    OUTPUT(m->msg_iov, (int)m->msg_iovlen, real_sendmsg(fd, m, flags),
           .kind = OUT_SEND, .fd = fd, .flags = flags, .msg = m, .sock_path = PATH_SAME);
}
