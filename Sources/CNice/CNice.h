// libnice and the GLib/GObject/GIO headers it needs (pkg-config `nice` gives the include paths).
#ifndef CNICE_H
#define CNICE_H

#include <glib.h>
#include <glib-object.h>
#include <gio/gio.h>
#include <nice/agent.h>

#endif
