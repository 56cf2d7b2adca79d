/* The header is the product; this file makes the compiler check its static
 * assertions on the user-space side. */
#include "flightbox_events.h"
