"""The web-login flow: sign in, a privilege check and a cart per request, sign out."""

from sessiond import Client, LoginRequired


def sign_in(client: Client, user_id: str) -> str:
    created = client.create_session("web_user", user_id=user_id, roles=["Manager"],
                                    idle_timeout=1800, storage={"cart": []})
    return created.token  # give it to the browser, e.g. in a cookie


def add_to_cart(client: Client, token: str, item: str) -> list:
    who = client.authenticate(token, "editSales")  # one call: who, and may they?
    if not who.all_granted:
        raise PermissionError("editSales")
    cart = client.update_storage(token, lambda values: values["cart"].append(item), "cart")
    client.log(token, f"{who.user_id} added {item} to the cart")
    return cart.values["cart"]


def sign_out(client: Client, token: str) -> None:
    client.close_session(token)


def main(address: str, api_key: str) -> None:
    with Client(address, api_key=api_key) as client:
        token = sign_in(client, "alice")
        print(add_to_cart(client, token, "book"), add_to_cart(client, token, "pen"))
        sign_out(client, token)
        try:
            add_to_cart(client, token, "lamp")
        except LoginRequired as error:  # SessionEnded: error.end_reason == "closed"
            print("sign in again:", error.reason)
