#pragma once
// Intentionally empty: see ../README (torch wheel has no Gloo headers).
