// The web-login flow: sign in, a privilege check and a cart per request, sign out.
import { Client, type JsonValue, LoginRequired } from '@sessiond/client';

export async function signIn(client: Client, userId: string): Promise<string> {
  const options = { userId, roles: ['Manager'], idleTimeoutMs: 30 * 60_000, storage: { cart: [] } };
  return (await client.createSession('web_user', options)).token; // to the browser, e.g. in a cookie
}

export async function addToCart(client: Client, token: string, item: string): Promise<JsonValue> {
  const who = await client.authenticate(token, ['editSales']); // one call: who, and may they?
  if (!who.allGranted) throw new Error('forbidden: editSales');
  const addItem = (values: Record<string, JsonValue>) => void (values.cart as string[]).push(item);
  const cart = await client.updateStorage(token, addItem, { keys: ['cart'] }); // compare-and-set, retried
  await client.log(token, [`${who.userId} added ${item} to the cart`]);
  return cart.values.cart;
}

export async function signOut(client: Client, token: string): Promise<void> {
  await client.closeSession(token);
}

export async function main(address: string, apiKey: string): Promise<void> {
  const client = new Client(address, { apiKey });
  const token = await signIn(client, 'alice');
  console.log(await addToCart(client, token, 'book'), await addToCart(client, token, 'pen'));
  await signOut(client, token);
  try {
    await addToCart(client, token, 'lamp');
  } catch (error) {
    if (!(error instanceof LoginRequired)) throw error; // SessionEnded: error.endReason === 'closed'
    console.log('sign in again:', error.reason);
  }
  client.close();
}
