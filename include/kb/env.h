/*
 * The preload libraries' settings (TAS_*, STRATA_*, ZIO_*) as the program
 * started.  Some programs clear their environment after start-up: nginx's
 * workers keep only TZ and what `env` lists, so a setting read at a worker's
 * first socket or file call would be gone, and it would open the default
 * Strata pool and mount instead of its master's, or drop kbrun --orp's
 * TAS_REQUIRE_NVM.  kb_getenv answers from the environment, else from the
 * copy taken when the library was loaded.
 */
#ifndef KB_ENV_H
#define KB_ENV_H

const char *kb_getenv(const char *name);

#endif
