package dev.sessiond.client;

/**
 * What a post did.
 *
 * @param sequence the message's number in its channel (1, 2, …); 0 for a local message
 * @param localDeliveries the subscriptions of the replica that took the post it was handed to
 */
public record Posted(long sequence, int localDeliveries) {}
