// Express middleware: one Authenticate per request, the identity on the request,
// 401 (or a redirect) to sign in again.
import type { Request, RequestHandler } from 'express';

import { type Client, type Identity, LoginRequired } from '@sessiond/client';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Who the request's session is, set by `sessiond()`. */
      identity?: Identity;
    }
  }
}

/**
 * Reads the token from the `session` cookie (or `Authorization: Bearer`),
 * asks sessiond who it is and whether it holds `privileges`, and sets
 * `req.identity`. No token, or one to sign in again with: 401, or a redirect
 * to `signInUrl` when given; a privilege missing: 403.
 */
export function sessiond(
  client: Client,
  privileges: string[] = [],
  options: { cookie?: string; signInUrl?: string } = {},
): RequestHandler {
  const cookie = options.cookie ?? 'session';
  return async (req, res, next) => {
    try {
      const identity = await client.authenticate(tokenOf(req, cookie), privileges);
      if (!identity.allGranted) {
        res.status(403).type('text').send('forbidden');
        return;
      }
      req.identity = identity;
      next();
    } catch (error) {
      if (!(error instanceof LoginRequired)) return next(error);
      if (options.signInUrl) return res.redirect(options.signInUrl);
      res.status(401).type('text').send(`sign in again (${error.reason})`);
    }
  };
}

function tokenOf(req: Request, cookie: string): string {
  const header = req.get('authorization') ?? '';
  if (header.startsWith('Bearer ')) return header.slice('Bearer '.length);
  for (const part of (req.get('cookie') ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === cookie) return value.join('=');
  }
  return ''; // authenticate answers TOKEN_MISSING: LoginRequired
}
