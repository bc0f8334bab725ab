"""mknod/mkfifo in a directory: prints one line per case (result or errno
name).  usage: mknod_worker.py DIR"""
import os, sys, errno, stat
D=sys.argv[1]; os.makedirs(D, exist_ok=True)
def t(n, f):
    try: print(n, f())
    except OSError as e: print(n, 'ERR', errno.errorcode[e.errno])
t('fifo', lambda: os.mkfifo(D+'/ff'))
t('fifo_noparent', lambda: os.mkfifo(D+'/nope/ff'))
t('reg', lambda: (os.mknod(D+'/reg', stat.S_IFREG|0o640), oct(os.stat(D+'/reg').st_mode), os.stat(D+'/reg').st_size))
t('reg_exists', lambda: os.mknod(D+'/reg', stat.S_IFREG|0o640))
t('fifo_exists', lambda: os.mkfifo(D+'/reg'))
t('chr', lambda: os.mknod(D+'/c', stat.S_IFCHR|0o600, os.makedev(1,3)))
t('sock', lambda: os.mknod(D+'/s', stat.S_IFSOCK|0o600))
t('fifo_under_file', lambda: os.mkfifo(D+'/reg/x'))
