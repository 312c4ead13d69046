"""Sidereal time, precession, refraction and horizontal coordinates as RMS computes them.

The helpers behind :mod:`skysift.calibration.platepar`, vectorised with numpy:
an RMS platepar's pixel <-> sky mapping is defined with these approximations
(Meeus 1998 for sidereal time and precession; Bennett's refraction formula),
so the platepar code reproduces them rather than using astropy's more exact
transforms. Written from the published descriptions (RMS ``RMS/Astrometry``),
not copied from RMS (GPL-3).
"""

from __future__ import annotations

import numpy as np

#: Julian date of the J2000.0 epoch.
J2000 = 2451545.0

# -- astronomy as RMS does it (vectorised) ----------------------------------------------------


def _gmst_deg(jd):
    """Greenwich mean sidereal time in degrees (Meeus 1998, eq. 12.4)."""
    jd = np.asarray(jd, float)
    t = (jd - J2000) / 36525.0
    g = 280.46061837 + 360.98564736629 * (jd - J2000) + 0.000387933 * t**2 - t**3 / 38710000.0
    return np.mod(g, 360.0)


def _prec_angles(jd0, jd1):
    big_t = (jd0 - J2000) / 36525.0
    t = (jd1 - jd0) / 36525.0
    a = 2306.2181 + 1.39656 * big_t - 0.000139 * big_t**2
    zeta = (a * t + (0.30188 - 0.000344 * big_t) * t**2 + 0.017998 * t**3) / 3600
    z = (a * t + (1.09468 + 0.000066 * big_t) * t**2 + 0.018203 * t**3) / 3600
    theta = (
        (2004.3109 - 0.85330 * big_t - 0.000217 * big_t**2) * t
        - (0.42665 + 0.000217 * big_t) * t**2
        - 0.041833 * t**3
    ) / 3600
    return np.radians(zeta), np.radians(z), np.radians(theta)


def _precess(jd0, jd1, ra, dec):
    """Precess RA, Dec (radians) from epoch jd0 to jd1 (Meeus 1998, eq. 21.4)."""
    zeta, z, theta = _prec_angles(np.asarray(jd0, float), np.asarray(jd1, float))
    a = np.cos(dec) * np.sin(ra + zeta)
    b = np.cos(theta) * np.cos(dec) * np.cos(ra + zeta) - np.sin(theta) * np.sin(dec)
    c = np.sin(theta) * np.cos(dec) * np.cos(ra + zeta) + np.cos(theta) * np.sin(dec)
    ra1 = np.mod(np.arctan2(a, b) + z, 2 * np.pi)
    near_pole = (np.pi / 2 - np.abs(dec)) < np.radians(0.5)
    dec1 = np.where(
        near_pole,
        np.sign(dec) * np.arccos(np.clip(np.hypot(a, b), -1, 1)),
        np.arcsin(np.clip(c, -1, 1)),
    )
    return ra1, dec1


def _unit(ra, dec):
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _precess_with_rotation(jd0, jd1, ra, dec, rot):
    """Precess RA, Dec and a field rotation angle (radians), as RMS does."""
    jd0, jd1 = np.broadcast_arrays(np.asarray(jd0, float), np.asarray(jd1, float))
    ra, dec, rot = np.broadcast_arrays(*(np.asarray(v, float) for v in (ra, dec, rot)))
    zeta, z, theta = _prec_angles(jd0, jd1)
    cz, sz = np.cos(zeta), np.sin(zeta)
    ct, st = np.cos(theta), np.sin(theta)
    cz2, sz2 = np.cos(z), np.sin(z)
    p = np.empty((*np.shape(zeta), 3, 3))
    p[..., 0, 0] = cz * ct * cz2 - sz * sz2
    p[..., 0, 1] = -sz * ct * cz2 - cz * sz2
    p[..., 0, 2] = -st * cz2
    p[..., 1, 0] = cz * ct * sz2 + sz * cz2
    p[..., 1, 1] = -sz * ct * sz2 + cz * cz2
    p[..., 1, 2] = -st * sz2
    p[..., 2, 0] = cz * st
    p[..., 2, 1] = -sz * st
    p[..., 2, 2] = ct
    v0 = _unit(ra, dec)
    v1 = np.einsum("...ij,...j->...i", p, v0)
    n0 = np.cross(v0, v1)
    n1 = np.einsum("...ij,...j->...i", p, n0)

    def norm(v):
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300)

    v1, n0, n1 = norm(v1), norm(n0), norm(n1)
    ra1 = np.mod(np.arctan2(v1[..., 1], v1[..., 0]), 2 * np.pi)
    dec1 = np.arcsin(np.clip(v1[..., 2], -1, 1))

    def proj(r, v):
        par = np.stack([-np.sin(r), np.cos(r), np.zeros_like(r)], axis=-1)
        return norm(par - np.sum(par * v, axis=-1, keepdims=True) * v)

    q0, q1 = proj(ra, v0), proj(ra1, v1)
    a1 = np.arctan2(np.sum(np.cross(n0, q0) * v0, axis=-1), np.sum(n0 * q0, axis=-1))
    a2 = np.arctan2(np.sum(np.cross(n1, q1) * v1, axis=-1), np.sum(n1 * q1, axis=-1))
    rot1 = np.fmod(rot + (a2 - a1) + np.pi, 2 * np.pi) - np.pi
    same = jd0 == jd1
    return np.where(same, ra, ra1), np.where(same, dec, dec1), np.where(same, rot, rot1)


def _radec_to_altaz(ra, dec, jd, lat, lon):
    """Azimuth (N through E) and elevation (radians) of same-epoch RA, Dec (radians)."""
    lat, lon = np.radians(lat), np.radians(lon)
    ha = np.radians(np.mod(_gmst_deg(jd) + np.degrees(lon) + 360, 360)) - ra
    ha = np.mod(ha + np.pi, 2 * np.pi) - np.pi
    az = np.pi + np.arctan2(np.sin(ha), np.cos(ha) * np.sin(lat) - np.tan(dec) * np.cos(lat))
    el = np.arcsin(
        np.clip(np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(ha), -1, 1)
    )
    return az, el


def _altaz_to_radec(az, el, jd, lat, lon):
    lat, lon = np.radians(lat), np.radians(lon)
    lst = np.radians(np.mod(_gmst_deg(jd) + np.degrees(lon) + 360, 360))
    ha = np.arctan2(-np.sin(az), np.tan(el) * np.cos(lat) - np.cos(az) * np.sin(lat))
    ra = np.mod(lst - ha + 2 * np.pi, 2 * np.pi)
    dec = np.arcsin(
        np.clip(np.sin(lat) * np.sin(el) + np.cos(lat) * np.cos(el) * np.cos(az), -1, 1)
    )
    return ra, dec


def _refract_true_to_apparent(el):
    e = np.degrees(np.maximum(el, np.radians(-0.5)))
    return el + np.radians(1.02 / (60 * np.tan(np.radians(e + 10.3 / (e + 5.11)))))


def _refract_apparent_to_true(el):
    e = np.degrees(np.maximum(el, np.radians(-0.5)))
    return el - np.radians(1.0 / (60 * np.tan(np.radians(e + 7.31 / (e + 4.4)))))


def _eq_refraction(ra, dec, jd, lat, lon, to_apparent: bool):
    ra, dec = _precess(J2000, jd, ra, dec)
    az, el = _radec_to_altaz(ra, dec, jd, lat, lon)
    el = _refract_true_to_apparent(el) if to_apparent else _refract_apparent_to_true(el)
    ra, dec = _altaz_to_radec(az, el, jd, lat, lon)
    return _precess(jd, J2000, ra, dec)


def _radec_to_altaz_rms(ra, dec, jd, lat, lon, refraction: bool):
    """J2000 RA, Dec (radians) -> apparent azimuth, elevation (radians) of date."""
    ra, dec = _precess(J2000, jd, ra, dec)
    az, el = _radec_to_altaz(ra, dec, jd, lat, lon)
    return az, (_refract_true_to_apparent(el) if refraction else el)
